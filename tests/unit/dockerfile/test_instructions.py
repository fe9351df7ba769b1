"""Typed instructions: every instruction, its flags and their validation, stages and global ARGs."""

from __future__ import annotations

import pytest

from forklift.dockerfile.instructions import (
    EXPANDED_FLAGS,
    EXPANDED_INSTRUCTIONS,
    Add,
    Arg,
    ArgDecl,
    Cmd,
    Copy,
    Dockerfile,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Label,
    Maintainer,
    MountSpecError,
    Onbuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
    parse_dockerfile,
    parse_duration,
    parse_mount,
    validate_chmod,
)
from forklift.dockerfile.syntax import parse
from forklift.errors import InstructionError


def typed(text: str) -> Dockerfile:
    return parse_dockerfile(parse(text, file="Dockerfile"))


def only(text: str) -> object:
    """The single instruction after a FROM line."""
    df = typed("FROM busybox\n" + text)
    assert len(df.stages) == 1
    (instruction,) = df.stages[0].instructions
    return instruction


def error_of(text: str) -> InstructionError:
    with pytest.raises(InstructionError) as info:
        typed(text)
    return info.value


# ---------------------------------------------------------------------------------------------
# Stages and global ARGs


def test_stages_global_args_and_names() -> None:
    df = typed(
        "ARG BASE=debian\nARG TAG\nFROM --platform=$BUILDPLATFORM $BASE:$TAG AS Builder\nRUN make\n"
        "FROM scratch\nCOPY --from=builder /out /out\n"
    )
    assert [a.args for a in df.global_args] == [
        (ArgDecl(name="BASE", default="debian"),),
        (ArgDecl(name="TAG", default=None),),
    ]
    first, second = df.stages
    assert (first.index, first.name, first.name_text) == (0, "builder", "Builder")
    assert first.base == "$BASE:$TAG"
    assert first.platform == "$BUILDPLATFORM"
    assert first.location.line == 3
    assert isinstance(first.instructions[0], Run)
    assert (second.index, second.name, second.base, second.display_name) == (1, None, "scratch", "stage-1")


def test_as_is_case_insensitive_and_name_is_validated() -> None:
    assert typed("FROM a as Foo.bar-1_x\n").stages[0].name == "foo.bar-1_x"
    err = error_of("FROM a AS 1stage\n")
    assert "invalid name for build stage" in err.message
    assert err.location is not None and err.location.line == 1
    assert "FROM requires either one or three arguments" in error_of("FROM a b\n").message
    assert "FROM requires either one or three arguments" in error_of("FROM a AS\n").message


def test_only_arg_may_precede_from() -> None:
    err = error_of("# comment\nARG X=1\nRUN echo hi\nFROM busybox\n")
    assert "no build stage in current context" in err.message
    assert err.location is not None and err.location.line == 3


def test_only_args_means_no_stages() -> None:
    err = error_of("ARG A=1\nARG B\n")
    assert "contains no stages" in err.message


# ---------------------------------------------------------------------------------------------
# Unknown instructions and flags


def test_unknown_instruction_suggests_a_keyword() -> None:
    err = error_of("FROM a\nCOPPY x y\n")
    assert err.message == "unknown instruction: COPPY"
    assert err.hint == "did you mean COPY?"
    assert err.location is not None
    assert (err.location.line, err.location.text) == (2, "COPPY x y")
    rendered = err.render()
    assert "Dockerfile:2:1" in rendered and "COPPY x y" in rendered and "^" in rendered


def test_unknown_flag_names_flag_instruction_and_line() -> None:
    err = error_of("FROM a\n\nCOPY --form=builder x y\n")
    assert "--form" in err.message and "COPY" in err.message
    assert err.hint == "did you mean --from?"
    assert err.location is not None
    assert err.location.line == 3
    assert err.location.column == 6  # points at the flag


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("ENV --x=1 A=b", "unknown flag --x"),
        ("WORKDIR --chown=1 /x", "unknown flag --chown"),
        ("ADD --from=x a b", "unknown flag --from"),
        ("ADD --parents a b", "unknown flag --parents"),
        ("COPY --link=maybe a b", "boolean"),
        ("COPY --link= a b", "missing a value"),
        ("COPY --from a b", "missing a value"),
        ("COPY --from=a --from=b x y", "only once"),
        ("RUN --network=bridge true", "unsupported network mode"),
        ("RUN --security=root true", "unsupported security mode"),
    ],
)
def test_bad_flags(line: str, needle: str) -> None:
    err = error_of(f"FROM a\n{line}\n")
    assert needle in err.message
    assert err.location is not None and err.location.line == 2


def test_flag_on_from_other_than_platform() -> None:
    assert "unknown flag --plat" in error_of("FROM --plat=linux/amd64 a\n").message


# ---------------------------------------------------------------------------------------------
# COPY / ADD


def test_copy_flags() -> None:
    copy = only(
        "COPY --from=builder --chown=app:app --chmod=u=rwX,go=rX --link --parents "
        "--exclude=*.tmp --exclude=docs/ a b /dest/\n"
    )
    assert isinstance(copy, Copy)
    assert copy.sources == ("a", "b")
    assert copy.dest == "/dest/"
    assert copy.from_ == "builder"
    assert copy.chown == "app:app"
    assert copy.chmod == "u=rwX,go=rX"
    assert copy.link and copy.parents
    assert copy.excludes == ("*.tmp", "docs/")


def test_copy_link_false_and_json_form() -> None:
    copy = only('COPY --link=FALSE ["a b", "/dest"]\n')
    assert isinstance(copy, Copy)
    assert copy.link is False
    assert copy.sources == ("a b",)


@pytest.mark.parametrize("mode", ["99999", "888", "17777", "u=rwz", "rwx", "0o755"])
def test_bad_chmod(mode: str) -> None:
    err = error_of(f"FROM a\nCOPY --chmod={mode} x y\n")
    assert "--chmod" in err.message and "COPY" in err.message
    assert err.location is not None and err.location.line == 2


@pytest.mark.parametrize("mode", ["755", "0644", "7777", "u+x", "a=rX,u+w", "go-w", "u=g"])
def test_good_chmod(mode: str) -> None:
    assert validate_chmod(mode) is None


def test_chmod_with_a_variable_is_checked_later() -> None:
    copy = only("COPY --chmod=$MODE x y\n")
    assert isinstance(copy, Copy) and copy.chmod == "$MODE"


def test_bad_chown() -> None:
    assert "--chown" in error_of("FROM a\nCOPY --chown=:grp x y\n").message


def test_copy_from_rejects_variables() -> None:
    err = error_of("FROM a\nCOPY --from=$STAGE x y\n")
    assert "variable expansion" in err.message


def test_copy_needs_a_destination() -> None:
    err = error_of("FROM a\nCOPY onlyone\n")
    assert "at least two arguments" in err.message


def test_add_flags() -> None:
    add = only(
        "ADD --checksum=sha256:" + "a" * 64 + " --keep-git-dir --unpack=false --chown=1:2 --chmod=600 "
        "--exclude=x https://example.com/a.tar /a/\n"
    )
    assert isinstance(add, Add)
    assert add.checksum == "sha256:" + "a" * 64
    assert add.keep_git_dir is True
    assert add.unpack is False
    assert (add.chown, add.chmod, add.excludes) == ("1:2", "600", ("x",))
    assert add.sources == ("https://example.com/a.tar",)


def test_add_bad_checksum() -> None:
    assert "--checksum" in error_of("FROM a\nADD --checksum=md5:abc x y\n").message


def test_copy_heredoc_source() -> None:
    copy = only("COPY <<EOF <<'RAW' /etc/\nhello $NAME\nEOF\nraw $X\nRAW\n")
    assert isinstance(copy, Copy)
    assert copy.sources == ()
    assert [(i.path, i.data, i.expand) for i in copy.inline] == [
        ("EOF", "hello $NAME\n", True),
        ("RAW", "raw $X\n", False),
    ]


def test_heredoc_cannot_be_a_destination() -> None:
    assert "heredoc as a destination" in error_of("FROM a\nCOPY x <<EOF\nbody\nEOF\n").message


# ---------------------------------------------------------------------------------------------
# RUN


def test_run_shell_and_exec_forms() -> None:
    shell = only("RUN echo hi && ls\n")
    assert isinstance(shell, Run) and shell.shell_form and shell.command == ("echo hi && ls",)
    exec_form = only('RUN ["echo", "hi"]\n')
    assert isinstance(exec_form, Run) and not exec_form.shell_form and exec_form.command == ("echo", "hi")


def test_run_heredoc_is_kept() -> None:
    run = only("RUN <<EOF\necho one\necho two\nEOF\n")
    assert isinstance(run, Run)
    assert [h.content for h in run.heredocs] == ["echo one\necho two\n"]


def test_run_network_security_and_mounts() -> None:
    run = only(
        "RUN --network=none --security=insecure --mount=type=cache,target=/root/.cache,id=pip,sharing=locked "
        "--mount=type=secret,id=token,required --mount=type=bind,from=builder,source=/out,target=/in,rw "
        "--mount=type=tmpfs,target=/tmp,size=64m --mount=type=ssh make\n"
    )
    assert isinstance(run, Run)
    assert (run.network, run.security) == ("none", "insecure")
    cache, secret, bind, tmpfs, ssh = run.mounts
    assert (cache.type, cache.target, cache.id, cache.sharing, cache.readonly) == (
        "cache",
        "/root/.cache",
        "pip",
        "locked",
        False,
    )
    assert (secret.type, secret.id, secret.required, secret.readonly) == ("secret", "token", True, True)
    assert (bind.from_, bind.source, bind.target, bind.readonly) == ("builder", "/out", "/in", False)
    assert (tmpfs.type, tmpfs.size, tmpfs.readonly) == ("tmpfs", 64 << 20, False)
    assert ssh.type == "ssh"


def test_mount_options() -> None:
    m = parse_mount("type=cache,target=/c,mode=0700,uid=1000,gid=1000,ro")
    assert (m.mode, m.uid, m.gid, m.readonly) == (0o700, 1000, 1000, True)
    m = parse_mount("type=secret,id=aws,env=AWS_KEY,dst=/run/x,readonly=false")
    assert (m.env, m.target, m.readonly) == ("AWS_KEY", "/run/x", False)
    # Keys ignore case; bind is the default type and read-only by default.
    m = parse_mount("TARGET=/x,Source=y")
    assert (m.type, m.target, m.source, m.readonly) == ("bind", "/x", "y", True)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("type=cahce,target=/x", "did you mean cache"),
        ("type=bind,target=/x,mode=0755", "mode is not allowed"),
        ("type=tmpfs,target=/x,uid=1", "uid is not allowed"),
        ("type=cache,target=/x,size=1m", "unexpected key 'size'"),
        ("target=/x,required", "unexpected key 'required'"),
        # The order matters: 'required' is checked against the type seen so far.
        ("required,type=secret,id=x", "unexpected key 'required'"),
        ("type=cache,target=/x,sharing=everyone", "unsupported sharing"),
        ("type=bind,target=/x,sharing=shared", "only allowed for cache"),
        ("type=secret,from=builder,id=x", "cannot have a from"),
        ("type=secret", "one of id, source or target"),
        ("type=secret,id=a,source=b", "both source and id"),
        ("type=cache,target=/x,mode=999", "for mode"),
        ("type=cache,target=/x,uid=-1", "for uid"),
        ("type=cache,target=/x,ro=perhaps", "invalid value for ro"),
        ("type=bind,target=/x,colour=red", "unexpected key 'colour'"),
        ("type=bind,target", "key=value"),
        ("type=bind,from=$STAGE,target=/x", "variable expansion"),
        ("type=bind", "needs a target"),
        ('type=bind,"target=/x', "quote"),
    ],
)
def test_bad_mounts(spec: str, needle: str) -> None:
    with pytest.raises(MountSpecError) as info:
        parse_mount(spec)
    assert needle in str(info.value)


def test_bad_mount_is_a_located_instruction_error() -> None:
    err = error_of("FROM a\nRUN --mount=type=cache,target=/x,sharing=x true\n")
    assert "RUN --mount" in err.message
    assert err.location is not None and err.location.line == 2 and err.location.column == 5


def test_mount_values_with_variables_are_deferred_then_expanded() -> None:
    m = parse_mount("type=cache,target=$DIR,mode=$MODE")
    assert m.target == "$DIR" and m.mode is None
    env = {"DIR": "/cache", "MODE": "0750"}
    expanded = parse_mount(
        m.spec, expand=lambda s: s.replace("$DIR", env["DIR"]).replace("$MODE", env["MODE"])
    )
    assert (expanded.target, expanded.mode) == ("/cache", 0o750)


# ---------------------------------------------------------------------------------------------
# Config instructions


def test_env_and_label_pairs() -> None:
    env = only('ENV A=1 B="two words" C=$A\n')
    assert isinstance(env, Env)
    assert env.pairs == (("A", "1"), ("B", '"two words"'), ("C", "$A"))
    assert not env.legacy
    legacy = only("ENV PATH /usr/bin:/bin\n")
    assert isinstance(legacy, Env) and legacy.legacy and legacy.pairs == (("PATH", "/usr/bin:/bin"),)
    label = only('LABEL org.opencontainers.image.title="forklift" version=1\n')
    assert isinstance(label, Label)
    assert label.pairs == (("org.opencontainers.image.title", '"forklift"'), ("version", "1"))


def test_arg_declarations() -> None:
    arg = only("ARG A B=2 C=\n")
    assert isinstance(arg, Arg)
    assert arg.args == (ArgDecl(name="A"), ArgDecl(name="B", default="2"), ArgDecl(name="C", default=""))
    assert "names can not be blank" in error_of("FROM a\nARG =x\n").message


def test_simple_config_instructions() -> None:
    expose = only("EXPOSE 80/tcp 443 $PORTS\n")
    assert isinstance(expose, Expose) and expose.ports == ("80/tcp", "443", "$PORTS")
    assert expose.original == "EXPOSE 80/tcp 443 $PORTS"
    volume = only('VOLUME ["/data", "/logs"]\n')
    assert isinstance(volume, Volume) and volume.paths == ("/data", "/logs")
    assert "empty string" in error_of('FROM a\nVOLUME [""]\n').message
    user = only("USER app:app\n")
    assert isinstance(user, User) and user.user == "app:app"
    workdir = only("WORKDIR /srv/app\n")
    assert isinstance(workdir, Workdir) and workdir.path == "/srv/app"
    maintainer = only("MAINTAINER Jane <j@example.com>\n")
    assert isinstance(maintainer, Maintainer) and maintainer.name == "Jane <j@example.com>"
    stop = only("STOPSIGNAL SIGQUIT\n")
    assert isinstance(stop, StopSignal) and stop.signal == "SIGQUIT"
    assert "unknown signal" in error_of("FROM a\nSTOPSIGNAL SIGNOPE\n").message


def test_cmd_entrypoint_shell() -> None:
    cmd = only('CMD ["./app", "--port", "8080"]\n')
    assert isinstance(cmd, Cmd) and cmd.command == ("./app", "--port", "8080") and not cmd.shell_form
    entry = only("ENTRYPOINT exec ./app\n")
    assert isinstance(entry, Entrypoint) and entry.shell_form and entry.command == ("exec ./app",)
    shell = only('SHELL ["/bin/bash", "-o", "pipefail", "-c"]\n')
    assert isinstance(shell, Shell) and shell.shell == ("/bin/bash", "-o", "pipefail", "-c")
    assert "JSON form" in error_of("FROM a\nSHELL /bin/bash -c\n").message


def test_healthcheck() -> None:
    hc = only(
        "HEALTHCHECK --interval=1m30s --timeout=5s --start-period=0s --retries=3 CMD curl -f localhost\n"
    )
    assert isinstance(hc, Healthcheck)
    assert hc.test == ("CMD-SHELL", "curl -f localhost")
    assert (hc.interval, hc.timeout, hc.start_period, hc.retries) == (90_000_000_000, 5_000_000_000, 0, 3)
    exec_form = only('HEALTHCHECK CMD ["curl", "-f", "localhost"]\n')
    assert isinstance(exec_form, Healthcheck) and exec_form.test == ("CMD", "curl", "-f", "localhost")
    none = only("HEALTHCHECK NONE\n")
    assert isinstance(none, Healthcheck) and none.test == ("NONE",)


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("HEALTHCHECK NONE extra", "takes no arguments"),
        ("HEALTHCHECK CMDX true", "unknown type"),
        ("HEALTHCHECK CMD", "missing command"),
        ("HEALTHCHECK --interval=10 CMD true", "invalid duration"),
        ("HEALTHCHECK --interval=100us CMD true", "minimum"),
        ("HEALTHCHECK --retries=-1 CMD true", "cannot be negative"),
        ("HEALTHCHECK --retries=x CMD true", "not an integer"),
        ("HEALTHCHECK --period=1s CMD true", "unknown flag --period"),
    ],
)
def test_bad_healthchecks(line: str, needle: str) -> None:
    assert needle in error_of(f"FROM a\n{line}\n").message


def test_go_durations() -> None:
    assert parse_duration("0") == 0
    assert parse_duration("1.5h") == 5_400_000_000_000
    assert parse_duration("300ms") == 300_000_000
    assert parse_duration("1h2m3s4ms") == 3_723_004_000_000
    for bad in ("", "10", "1x", "s", ".s"):
        with pytest.raises(ValueError):
            parse_duration(bad)


# ---------------------------------------------------------------------------------------------
# ONBUILD


def test_onbuild_records_a_typed_trigger() -> None:
    onbuild = only("ONBUILD COPY --from=builder /a /b\n")
    assert isinstance(onbuild, Onbuild)
    assert isinstance(onbuild.trigger, Copy)
    assert onbuild.trigger.from_ == "builder"
    assert onbuild.expression == "COPY --from=builder /a /b"
    assert onbuild.trigger.location.line == 2


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("ONBUILD ONBUILD RUN x", "ONBUILD ONBUILD"),
        ("ONBUILD FROM alpine", "FROM isn't allowed"),
        ("ONBUILD MAINTAINER me", "MAINTAINER isn't allowed"),
        ("ONBUILD COPY --chmod=99999 a b", "--chmod"),
    ],
)
def test_onbuild_forbidden_forms(line: str, needle: str) -> None:
    err = error_of(f"FROM a\n{line}\n")
    assert needle in err.message
    assert err.location is not None and err.location.line == 2


# ---------------------------------------------------------------------------------------------
# The expansion table


def test_expansion_table_matches_the_checklist() -> None:
    for keyword in (
        "add",
        "copy",
        "env",
        "expose",
        "from",
        "label",
        "stopsignal",
        "user",
        "volume",
        "workdir",
    ):
        assert keyword in EXPANDED_INSTRUCTIONS
    for keyword in ("run", "cmd", "entrypoint", "healthcheck", "shell"):
        assert keyword not in EXPANDED_INSTRUCTIONS
    assert "from" not in EXPANDED_FLAGS["copy"] and "exclude" not in EXPANDED_FLAGS["copy"]
    assert {"chown", "chmod"} <= EXPANDED_FLAGS["copy"]
    assert "checksum" in EXPANDED_FLAGS["add"]
    assert EXPANDED_FLAGS["from"] == frozenset({"platform"})
