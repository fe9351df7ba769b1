"""Lowering instructions to ops (RUN heredoc rules, COPY/ADD sources) and ARG scoping."""

from __future__ import annotations

import pytest

from forklift.dockerfile.instructions import Add, Arg, ArgDecl, Run, parse_dockerfile, parse_mount
from forklift.dockerfile.syntax import parse
from forklift.errors import ExpansionError, InstructionError, SourceLocation
from forklift.oci.model import Platform
from forklift.plan.args import declare_stage_arg, expand_mount, platform_args, resolve_global_args
from forklift.plan.lower import HEREDOC_SCRIPT_DIR, lower_add, run_arguments
from forklift.plan.ops import MainContextRef

LOC = SourceLocation(file="Dockerfile", line=1)


def first(text: str) -> object:
    return parse_dockerfile(parse("FROM busybox\n" + text, file="Dockerfile")).stages[0].instructions[0]


def test_run_without_heredoc_is_unchanged() -> None:
    run = first("RUN echo hi\n")
    assert isinstance(run, Run)
    assert run_arguments(run) == (("echo hi",), ())


def test_lone_heredoc_runs_its_body() -> None:
    run = first("RUN <<EOF\necho one\necho two\nEOF\n")
    assert isinstance(run, Run)
    assert run_arguments(run) == (("echo one\necho two\n",), ())


def test_lone_heredoc_with_shebang_becomes_a_script() -> None:
    run = first("RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n")
    assert isinstance(run, Run)
    args, files = run_arguments(run)
    assert args == (HEREDOC_SCRIPT_DIR + "EOF",)
    assert [(f.directory, f.name, f.data, f.mode) for f in files] == [
        (HEREDOC_SCRIPT_DIR, "EOF", "#!/usr/bin/env python3\nprint(1)\n", 0o755)
    ]


def test_heredoc_fed_to_a_command_is_passed_to_the_shell() -> None:
    run = first("RUN python3 <<EOF > /out\nprint(1)\nEOF\n")
    assert isinstance(run, Run)
    assert run_arguments(run) == (("python3 <<EOF > /out\nprint(1)\nEOF",), ())


def test_add_reads_the_context() -> None:
    add = first("ADD --link https://example.com/x.tgz /opt/\n")
    assert isinstance(add, Add)
    op = lower_add(add)
    assert op.source == MainContextRef() and op.link and op.paths == ("https://example.com/x.tgz",)
    assert op.instruction is add


def _args(text: str) -> tuple[Arg, ...]:
    return parse_dockerfile(parse(text + "FROM scratch\n", file="Dockerfile")).global_args


def test_global_args_see_values_from_before_their_instruction() -> None:
    scope = resolve_global_args(_args("ARG A=1\nARG A=2 B=$A\nARG C=${B}x D\n"), build_args={}, automatic={})
    assert dict(scope.values) == {"A": "2", "B": "1", "C": "1x"}
    assert scope.declared == frozenset({"A", "B", "C", "D"})


def test_build_args_override_globals_and_platform_args() -> None:
    automatic = platform_args(
        build=Platform(os="linux", architecture="amd64"),
        target=Platform(os="linux", architecture="arm", variant="v7"),
        target_stage="final",
    )
    assert automatic["TARGETPLATFORM"] == "linux/arm/v7" and automatic["TARGETVARIANT"] == "v7"
    assert automatic["BUILDVARIANT"] == ""
    scope = resolve_global_args(
        _args("ARG A=1\nARG B=$TARGETARCH\n"),
        build_args={"A": "x", "TARGETARCH": "riscv64"},
        automatic=automatic,
    )
    assert scope.values["A"] == "x"
    assert scope.values["B"] == "riscv64"
    assert scope.automatic["TARGETARCH"] == "riscv64"


def test_stage_arg_redeclaration() -> None:
    globals_ = {"VERSION": "1.2"}
    # Without a default: the global value.
    assert declare_stage_arg(
        ArgDecl(name="VERSION"), env={}, global_values=globals_, build_args={}, location=LOC
    ) == ("VERSION", "1.2")
    # With a default: the default, expanded with what the stage sees.
    assert declare_stage_arg(
        ArgDecl(name="V", default="${BASE}-x"),
        env={"BASE": "b"},
        global_values=globals_,
        build_args={},
        location=LOC,
    ) == ("V", "b-x")
    # --build-arg wins over both.
    assert declare_stage_arg(
        ArgDecl(name="VERSION", default="0"),
        env={},
        global_values=globals_,
        build_args={"VERSION": "9"},
        location=LOC,
    ) == ("VERSION", "9")
    # Declared, no value anywhere: unset.
    assert declare_stage_arg(
        ArgDecl(name="NOPE"), env={}, global_values=globals_, build_args={}, location=LOC
    ) == ("NOPE", None)


def test_expansion_errors_get_the_instruction_location() -> None:
    with pytest.raises(ExpansionError) as info:
        declare_stage_arg(
            ArgDecl(name="X", default="${Y:?Y is required}"),
            env={},
            global_values={},
            build_args={},
            location=LOC,
        )
    assert info.value.location is not None and info.value.location.line == 1


def test_mount_values_are_expanded_and_checked_at_run_time() -> None:
    mount = parse_mount("type=cache,target=${HOME}/.cache,mode=$MODE,id=c-$ARCH")
    expanded = expand_mount(mount, {"HOME": "/root", "MODE": "0700", "ARCH": "amd64"}, location=LOC)
    assert (expanded.target, expanded.mode, expanded.id) == ("/root/.cache", 0o700, "c-amd64")
    plain = parse_mount("type=tmpfs,target=/t")
    assert expand_mount(plain, {}, location=LOC) is plain
    with pytest.raises(InstructionError) as info:
        expand_mount(parse_mount("type=cache,target=/c,mode=$MODE"), {"MODE": "999"}, location=LOC)
    assert "mode" in info.value.message and info.value.location == LOC
