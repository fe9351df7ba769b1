"""``Node``s -> typed instructions grouped into stages, with every flag validated.

Pure: no I/O and no variable expansion. Values that BuildKit expands (see ``EXPANDED_INSTRUCTIONS``
and ``EXPANDED_FLAGS``) are kept as written; the planner and the executor expand them with
``forklift.dockerfile.words`` once the variables are known. Values that cannot hold a variable are
checked here, so a typo fails before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import field, replace
from typing import TypeAlias

from forklift.dockerfile.syntax import Heredoc, Node, ParsedDockerfile
from forklift.errors import InstructionError, SourceLocation, did_you_mean
from forklift.records import record

# Instructions whose arguments the builder expands with ARG/ENV values (checklist section 2).
# RUN, CMD, ENTRYPOINT, HEALTHCHECK and SHELL are expanded by the shell at run time, not here.
EXPANDED_INSTRUCTIONS: frozenset[str] = frozenset(
    {
        "add",
        "arg",
        "copy",
        "env",
        "expose",
        "from",
        "label",
        "onbuild",
        "stopsignal",
        "user",
        "volume",
        "workdir",
    }
)
# Flags the builder expands, per instruction. Every RUN --mount option value is expanded except
# ``from``; COPY --from, ADD/COPY --exclude and RUN --network/--security are never expanded.
# FROM --platform sees only the global ARGs (and the automatic platform ARGs).
EXPANDED_FLAGS: Mapping[str, frozenset[str]] = {
    "add": frozenset({"chown", "chmod", "checksum"}),
    "copy": frozenset({"chown", "chmod"}),
    "run": frozenset({"mount"}),
    "from": frozenset({"platform"}),
}
# EXPOSE expands into several words: one variable may hold several ports.
MULTI_WORD_EXPANSION: frozenset[str] = frozenset({"expose"})

KEYWORDS: tuple[str, ...] = (
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
)

STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*")
MOUNT_TYPES: tuple[str, ...] = ("bind", "cache", "tmpfs", "secret", "ssh")
SHARING_MODES: tuple[str, ...] = ("shared", "private", "locked")
NETWORK_MODES: tuple[str, ...] = ("default", "none", "host")
SECURITY_MODES: tuple[str, ...] = ("sandbox", "insecure")
MINIMUM_DURATION_NS = 1_000_000  # Docker's minimum for HEALTHCHECK durations (1ms)


# ---------------------------------------------------------------------------------------------
# The typed instructions
# ---------------------------------------------------------------------------------------------


@record(kw_only=True)
class InstructionBase:
    """What every instruction carries: where it is and its text (continuations joined)."""

    location: SourceLocation
    original: str = ""

    @property
    def keyword(self) -> str:
        """The instruction keyword, upper-case (``COPY``)."""
        return type(self).__name__.upper()


@record(kw_only=True)
class From(InstructionBase):
    """``FROM [--platform=P] base [AS name]``; ``base`` and ``platform`` are unexpanded."""

    base: str
    name: str | None = None  # lower-cased, validated
    name_text: str | None = None  # as written
    platform: str | None = None


@record(kw_only=True)
class Mount:
    """One ``RUN --mount=...`` after parsing its CSV options.

    ``spec`` is the raw option text. Option values holding a ``$`` are kept as written and checked
    only after expansion: call ``parse_mount(spec, expand=...)`` again with the stage's variables.
    """

    spec: str
    type: str = "bind"
    target: str | None = None
    source: str | None = None
    from_: str | None = None  # never expanded (BuildKit rejects variables in it)
    id: str | None = None
    sharing: str | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    readonly: bool = True  # bind and secret/ssh default to read-only; cache and tmpfs to writable
    required: bool = False
    size: int | None = None  # tmpfs size limit in bytes
    env: str | None = None  # secret exposed as this environment variable


@record(kw_only=True)
class Run(InstructionBase):
    """``RUN``: ``command`` is the exec-form argv, or one shell-form string (heredoc markers included)."""

    command: tuple[str, ...]
    shell_form: bool
    heredocs: tuple[Heredoc, ...] = ()
    mounts: tuple[Mount, ...] = ()
    network: str | None = None
    security: str | None = None
    devices: tuple[str, ...] = ()


@record(kw_only=True)
class InlineSource:
    """A heredoc used as a COPY/ADD source: written as a file named ``path``."""

    path: str
    data: str
    expand: bool


@record(kw_only=True)
class Copy(InstructionBase):
    """``COPY [flags] src... dest``; heredoc sources are in ``inline``."""

    sources: tuple[str, ...]
    dest: str
    inline: tuple[InlineSource, ...] = ()
    from_: str | None = None
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    parents: bool = False
    excludes: tuple[str, ...] = ()


@record(kw_only=True)
class Add(InstructionBase):
    """``ADD [flags] src... dest``: local paths, URLs or git sources; heredoc sources in ``inline``."""

    sources: tuple[str, ...]
    dest: str
    inline: tuple[InlineSource, ...] = ()
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    keep_git_dir: bool = False
    checksum: str | None = None
    unpack: bool | None = None  # None: the default (local archives are unpacked, URLs are not)
    excludes: tuple[str, ...] = ()


@record(kw_only=True)
class Env(InstructionBase):
    """``ENV k=v ...``: raw (key, value) pairs; values keep quotes until expansion."""

    pairs: tuple[tuple[str, str], ...]
    legacy: bool = False  # ``ENV k v`` form


@record(kw_only=True)
class ArgDecl:
    """One declared ARG: ``name`` and its raw default (None without ``=``)."""

    name: str
    default: str | None = None


@record(kw_only=True)
class Arg(InstructionBase):
    """``ARG name[=default] ...``."""

    args: tuple[ArgDecl, ...]


@record(kw_only=True)
class Label(InstructionBase):
    """``LABEL k=v ...``: raw (key, value) pairs."""

    pairs: tuple[tuple[str, str], ...]


@record(kw_only=True)
class Expose(InstructionBase):
    """``EXPOSE port[/proto] ...`` (unexpanded words)."""

    ports: tuple[str, ...]


@record(kw_only=True)
class Volume(InstructionBase):
    """``VOLUME path ...`` (JSON or words)."""

    paths: tuple[str, ...]


@record(kw_only=True)
class User(InstructionBase):
    """``USER user[:group]``."""

    user: str


@record(kw_only=True)
class Workdir(InstructionBase):
    """``WORKDIR path`` (relative paths build on the previous WORKDIR)."""

    path: str


@record(kw_only=True)
class Cmd(InstructionBase):
    """``CMD``: exec-form argv, or one shell-form string (``shell_form``)."""

    command: tuple[str, ...]
    shell_form: bool


@record(kw_only=True)
class Entrypoint(InstructionBase):
    """``ENTRYPOINT``: exec-form argv, or one shell-form string (``shell_form``)."""

    command: tuple[str, ...]
    shell_form: bool


@record(kw_only=True)
class Shell(InstructionBase):
    """``SHELL ["exe", "arg", ...]`` (JSON form only)."""

    shell: tuple[str, ...]


@record(kw_only=True)
class StopSignal(InstructionBase):
    """``STOPSIGNAL name-or-number``."""

    signal: str


@record(kw_only=True)
class Healthcheck(InstructionBase):
    """``HEALTHCHECK NONE`` (test ``("NONE",)``) or ``HEALTHCHECK [opts] CMD ...``.

    ``test`` follows the image config: ``("CMD", argv...)`` or ``("CMD-SHELL", "line")``. Durations are
    nanoseconds; 0 (and retries 0) means "not set, use the default".
    """

    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@record(kw_only=True)
class Maintainer(InstructionBase):
    """``MAINTAINER name`` (deprecated; sets the author)."""

    name: str


@record(kw_only=True)
class Onbuild(InstructionBase):
    """``ONBUILD <instruction>``: ``expression`` is the trigger text stored in the image config."""

    trigger: Instruction
    expression: str


Instruction: TypeAlias = (
    From
    | Run
    | Copy
    | Add
    | Env
    | Arg
    | Label
    | Expose
    | Volume
    | User
    | Workdir
    | Cmd
    | Entrypoint
    | Shell
    | StopSignal
    | Healthcheck
    | Maintainer
    | Onbuild
)


@record(kw_only=True)
class Stage:
    """One build stage: its FROM and the instructions after it (FROM itself not included)."""

    index: int
    name: str | None  # lower-cased; None for an unnamed stage
    name_text: str | None  # as written after AS
    base: str  # the FROM image text, unexpanded
    platform: str | None  # FROM --platform, unexpanded
    instructions: tuple[Instruction, ...]
    location: SourceLocation
    from_: From

    @property
    def display_name(self) -> str:
        """The name, or ``stage-N`` for an unnamed stage."""
        return self.name if self.name is not None else f"stage-{self.index}"


@record(kw_only=True)
class Dockerfile:
    """A typed Dockerfile: global ARGs (before the first FROM) and the stages."""

    file: str
    global_args: tuple[Arg, ...]
    stages: tuple[Stage, ...]
    escape: str = "\\"
    source_lines: tuple[str, ...] = field(default=(), repr=False)


# ---------------------------------------------------------------------------------------------
# Errors and locations
# ---------------------------------------------------------------------------------------------


def node_location(node: Node, parsed: ParsedDockerfile, *, needle: str | None = None) -> SourceLocation:
    """The location of ``node``; with ``needle``, the column points at its first occurrence."""
    line = max(node.start_line, 1)
    text = parsed.line_text(line)
    column = 1
    if text is not None:
        stripped = len(text) - len(text.lstrip())
        column = stripped + 1
        if needle:
            found = text.find(needle)
            if found >= 0:
                column = found + 1
    return SourceLocation(
        file=parsed.file, line=line, column=column, end_line=node.end_line or None, text=text
    )


class _Context:
    """The node being typed and how to make errors about it."""

    def __init__(self, node: Node, parsed: ParsedDockerfile) -> None:
        self.node = node
        self.parsed = parsed
        self.keyword = node.keyword.upper()
        self.location = node_location(node, parsed)

    def error(self, message: str, *, needle: str | None = None, hint: str | None = None) -> InstructionError:
        loc = node_location(self.node, self.parsed, needle=needle) if needle else self.location
        return InstructionError(message, location=loc, hint=hint)

    def flag_error(self, flag: str, message: str, *, hint: str | None = None) -> InstructionError:
        return self.error(f"{self.keyword} --{flag}: {message}", needle=f"--{flag}", hint=hint)


# ---------------------------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------------------------

BOOL, STRING, STRINGS = "bool", "string", "strings"

FLAG_SPECS: Mapping[str, Mapping[str, str]] = {
    "from": {"platform": STRING},
    "run": {"mount": STRINGS, "network": STRING, "security": STRING, "device": STRINGS},
    "copy": {
        "from": STRING,
        "chown": STRING,
        "chmod": STRING,
        "link": BOOL,
        "parents": BOOL,
        "exclude": STRINGS,
    },
    "add": {
        "chown": STRING,
        "chmod": STRING,
        "link": BOOL,
        "keep-git-dir": BOOL,
        "checksum": STRING,
        "unpack": BOOL,
        "exclude": STRINGS,
    },
    "healthcheck": {
        "interval": STRING,
        "timeout": STRING,
        "start-period": STRING,
        "start-interval": STRING,
        "retries": STRING,
    },
}


@record
class _Flags:
    strings: dict[str, str]
    bools: dict[str, bool]
    lists: dict[str, list[str]]


def _parse_flags(ctx: _Context) -> _Flags:
    """BuildKit's flag rules: names are case-sensitive, ``--x value`` (with a space) is not a value."""
    spec = FLAG_SPECS.get(ctx.node.keyword, {})
    out = _Flags({}, {}, {})
    for raw in ctx.node.flags:
        if raw == "--":
            break
        if not raw.startswith("--"):
            raise ctx.error(f"{ctx.keyword}: flag {raw!r} should start with --")
        name, has_value, value = raw[2:].partition("=")
        kind = spec.get(name)
        if kind is None:
            known = [f"--{n}" for n in spec]
            hint = did_you_mean(f"--{name}", known) if known else None
            if hint is None:
                hint = f"{ctx.keyword} accepts " + (", ".join(known) if known else "no flags")
            raise ctx.error(f"{ctx.keyword}: unknown flag --{name}", needle=f"--{name}", hint=hint)
        if kind != STRINGS and (name in out.strings or name in out.bools):
            raise ctx.flag_error(name, "this flag may be given only once")
        if kind == BOOL:
            if has_value and value == "":
                raise ctx.flag_error(
                    name, "missing a value after '='", hint=f"use --{name} or --{name}=false"
                )
            lowered = value.lower()
            if lowered not in ("", "true", "false"):
                raise ctx.flag_error(name, f"expecting a boolean value (true or false), not {value!r}")
            out.bools[name] = lowered != "false"
        elif not has_value:
            raise ctx.flag_error(name, "missing a value", hint=f"write --{name}=VALUE (no space)")
        elif kind == STRING:
            out.strings[name] = value
        else:
            out.lists.setdefault(name, []).append(value)
    return out


def _has_variable(value: str) -> bool:
    return "$" in value


# Symbolic modes as chmod(1) takes them: [ugoa]*([-+=]([rwxXst]*|[ugo]))+ per comma-separated clause.
_SYMBOLIC_CLAUSE = re.compile(r"[ugoa]*(?:[-+=](?:[rwxXst]*|[ugo]))+")


def validate_chmod(value: str) -> str | None:
    """Why ``value`` is not a valid --chmod mode (octal up to 7777, or symbolic), or None if valid."""
    if re.fullmatch(r"[0-7]+", value):
        if int(value, 8) > 0o7777:
            return f"octal mode {value} is larger than 7777"
        return None
    if re.fullmatch(r"[0-9]+", value):
        return f"{value} is not an octal mode (digits 0-7 only)"
    clauses = value.split(",")
    if all(_SYMBOLIC_CLAUSE.fullmatch(c) for c in clauses):
        return None
    return f"{value!r} is neither an octal mode (like 0755) nor a symbolic one (like u=rwX,go=rX)"


def validate_chown(value: str) -> str | None:
    """Why ``value`` is not ``user[:group]``, or None if it is."""
    user, _, group = value.partition(":")
    if user == "" or (":" in value and group == "") or group.count(":"):
        return f"{value!r} is not user[:group]"
    return None


_CHECKSUM = re.compile(r"(sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128}|[0-9a-f]{4,64})")


def validate_checksum(value: str) -> str | None:
    """Why ``value`` is not a digest (``sha256:...``) or a git commit prefix, or None if it is."""
    if _CHECKSUM.fullmatch(value):
        return None
    return f"{value!r} is not a digest like sha256:<64 hex digits> or a git commit"


_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([a-zµμ]+)")


def parse_duration(text: str) -> int:
    """A Go duration (``1m30s``, ``1.5h``, ``300ms``, ``0``) in nanoseconds; ValueError if malformed."""
    s = text
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None or m.group(1) in ("", ".") or m.group(2) not in _DURATION_UNITS:
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * int(total)


_SIGNALS = frozenset(
    re.split(
        " ",
        "ABRT ALRM BUS CHLD CLD CONT FPE HUP ILL INT IO IOT KILL PIPE POLL PROF PWR QUIT SEGV STKFLT "
        "STOP SYS TERM TRAP TSTP TTIN TTOU URG USR1 USR2 VTALRM WINCH XCPU XFSZ",
    )
)


def validate_signal(value: str) -> str | None:
    """Why ``value`` is not a signal name (``SIGTERM``, ``TERM``, ``RTMIN+3``) or number."""
    if re.fullmatch(r"[0-9]+", value):
        return None if 0 < int(value) < 65 else f"signal number {value} is out of range"
    name = value.upper()
    name = name[3:] if name.startswith("SIG") else name
    if name in _SIGNALS or re.fullmatch(r"RT(MIN|MAX)([+-][0-9]+)?", name):
        return None
    return f"unknown signal {value!r}"


# ---------------------------------------------------------------------------------------------
# RUN --mount
# ---------------------------------------------------------------------------------------------

_MOUNT_KEYS = (
    "type",
    "from",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "id",
    "sharing",
    "required",
    "mode",
    "uid",
    "gid",
    "size",
    "env",
)
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kmgtp]?)(i?b?)", re.IGNORECASE)


class MountSpecError(ValueError):
    """A ``--mount`` value is invalid (the caller turns it into a located error)."""


def _split_csv(spec: str) -> list[str]:
    """One CSV record as Go's encoding/csv reads it (double quotes group, ``""`` is a quote)."""
    fields: list[str] = []
    cur: list[str] = []
    i = 0
    at_start = True
    while i < len(spec):
        ch = spec[i]
        if at_start and ch == '"':
            i += 1
            while True:
                if i >= len(spec):
                    raise MountSpecError(f"unterminated quote in {spec!r}")
                if spec[i] == '"':
                    if i + 1 < len(spec) and spec[i + 1] == '"':
                        cur.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                cur.append(spec[i])
                i += 1
            if i < len(spec) and spec[i] != ",":
                raise MountSpecError(f"extraneous text after a quoted field in {spec!r}")
            at_start = False
            continue
        if ch == ",":
            fields.append("".join(cur))
            cur = []
            at_start = True
        else:
            if ch == '"':
                raise MountSpecError(f'bare " in non-quoted field in {spec!r}')
            cur.append(ch)
            at_start = False
        i += 1
    fields.append("".join(cur))
    return fields


def _go_bool(key: str, value: str) -> bool:
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise MountSpecError(f"invalid value for {key}: {value!r} (expected true or false)")


def _parse_size(value: str) -> int:
    m = _SIZE.fullmatch(value.strip())
    if m is None:
        raise MountSpecError(f"invalid value for size: {value!r}")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


def _parse_uint(key: str, value: str, base: int) -> int:
    try:
        number = int(value, base)
    except ValueError:
        number = -1
    if number < 0 or number >= 1 << 32 or not value.isascii() or value.startswith(("+", "-")):
        kind = "an octal number" if base == 8 else "a non-negative integer"
        raise MountSpecError(f"invalid value {value!r} for {key} (expected {kind})")
    return number


def parse_mount(spec: str, *, expand: Callable[[str], str] | None = None) -> Mount:
    """Parse one ``--mount`` value with BuildKit's rules; MountSpecError when it is invalid.

    Without ``expand``, values holding a ``$`` are kept as written and not checked (they are
    checked when the executor calls again with ``expand``); ``from`` never takes a variable.
    """
    values: dict[str, object] = {"type": "bind", "readonly": True, "required": False}
    ro_auto = True
    deferred = False
    for fld in _split_csv(spec):
        key, has_value, value = fld.partition("=")
        key = key.lower()
        mtype = str(values["type"])
        if not has_value:
            if key in ("readonly", "ro"):
                values["readonly"], ro_auto = True, False
            elif key in ("readwrite", "rw"):
                values["readonly"], ro_auto = False, False
            elif key == "required":
                if mtype not in ("secret", "ssh"):
                    raise MountSpecError(f"unexpected key 'required' for mount type '{mtype}'")
                values["required"] = True
            elif key in _MOUNT_KEYS:
                raise MountSpecError(f"invalid field {fld!r}: it must be a key=value pair")
            else:
                raise MountSpecError(f"unexpected key {key!r} in {fld!r}")
            continue
        if key == "from":
            if re.search(r"\$.", value):
                raise MountSpecError(
                    "'from' doesn't support variable expansion, define an alias stage instead"
                )
        elif expand is not None:
            value = expand(value)
        elif _has_variable(value) and key in _MOUNT_KEYS:
            deferred = True
            if key in ("target", "dst", "destination", "source", "src", "id", "env"):
                values[{"dst": "target", "destination": "target", "src": "source"}.get(key, key)] = value
            continue
        if key == "type":
            lowered = value.lower()
            if lowered not in MOUNT_TYPES:
                hint = did_you_mean(lowered, MOUNT_TYPES)
                raise MountSpecError(
                    f"unsupported mount type {value!r}"
                    + (f" ({hint})" if hint else "")
                    + f"; types are {', '.join(MOUNT_TYPES)}"
                )
            values["type"] = lowered
        elif key == "from":
            values["from_"] = value
        elif key in ("source", "src"):
            values["source"] = value
        elif key in ("target", "dst", "destination"):
            values["target"] = value
        elif key in ("readonly", "ro"):
            values["readonly"], ro_auto = _go_bool(key, value), False
        elif key in ("readwrite", "rw"):
            values["readonly"], ro_auto = not _go_bool(key, value), False
        elif key == "required":
            if mtype not in ("secret", "ssh"):
                raise MountSpecError(f"unexpected key 'required' for mount type '{mtype}'")
            values["required"] = _go_bool(key, value)
        elif key == "size":
            if mtype != "tmpfs":
                raise MountSpecError(f"unexpected key 'size' for mount type '{mtype}'")
            values["size"] = _parse_size(value)
        elif key == "id":
            values["id"] = value
        elif key == "sharing":
            lowered = value.lower()
            if lowered not in SHARING_MODES:
                raise MountSpecError(
                    f"unsupported sharing value {value!r}; use one of {', '.join(SHARING_MODES)}"
                )
            values["sharing"] = lowered
        elif key == "mode":
            values["mode"] = _parse_uint(key, value, 8)
        elif key in ("uid", "gid"):
            values[key] = _parse_uint(key, value, 10)
        elif key == "env":
            values["env"] = value
        else:
            hint = did_you_mean(key, _MOUNT_KEYS)
            raise MountSpecError(f"unexpected key {key!r} in {fld!r}" + (f" ({hint})" if hint else ""))
    mtype = str(values["type"])
    if mtype not in ("secret", "ssh", "cache"):
        for key in ("mode", "uid", "gid"):
            if key in values:
                raise MountSpecError(f"{key} is not allowed for {mtype!r} mounts")
    if ro_auto:
        values["readonly"] = mtype not in ("cache", "tmpfs")
    if mtype == "secret":
        if "from_" in values:
            raise MountSpecError("a secret mount cannot have a from")
        if "sharing" in values:
            raise MountSpecError("a secret mount cannot define sharing")
        if not any(k in values for k in ("source", "target", "id")):
            raise MountSpecError("invalid secret mount: one of id, source or target is required")
        if "source" in values and "id" in values:
            raise MountSpecError("a secret mount cannot have both source and id")
    if "sharing" in values and mtype != "cache":
        raise MountSpecError(f"sharing is only allowed for cache mounts, not {mtype!r}")
    if mtype in ("bind", "cache", "tmpfs") and "target" not in values and not deferred:
        raise MountSpecError(f"a {mtype} mount needs a target (target=/path)")
    return Mount(
        spec=spec,
        type=mtype,
        target=_opt_str(values.get("target")),
        source=_opt_str(values.get("source")),
        from_=_opt_str(values.get("from_")),
        id=_opt_str(values.get("id")),
        sharing=_opt_str(values.get("sharing")),
        mode=_opt_int(values.get("mode")),
        uid=_opt_int(values.get("uid")),
        gid=_opt_int(values.get("gid")),
        readonly=bool(values["readonly"]),
        required=bool(values["required"]),
        size=_opt_int(values.get("size")),
        env=_opt_str(values.get("env")),
    )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) else None


# ---------------------------------------------------------------------------------------------
# One function per instruction
# ---------------------------------------------------------------------------------------------


def _no_flags(ctx: _Context) -> None:
    _parse_flags(ctx)


def _type_from(ctx: _Context) -> From:
    flags = _parse_flags(ctx)
    args = ctx.node.args
    name_text: str | None = None
    if len(args) == 3 and args[1].lower() == "as":
        name_text = args[2]
        if not STAGE_NAME.fullmatch(name_text.lower()):
            raise ctx.error(
                f"invalid name for build stage: {name_text!r}, "
                "name can't start with a number or contain symbols",
                needle=name_text,
                hint="stage names match [a-z][a-z0-9-_.]* (case is ignored)",
            )
    elif len(args) != 1:
        hint = "write FROM image [AS name]"
        if len(args) == 3:
            hint = f"did you mean 'AS' instead of {args[1]!r}?"
        raise ctx.error("FROM requires either one or three arguments", hint=hint)
    platform = flags.strings.get("platform")
    if platform is not None and platform == "":
        raise ctx.flag_error("platform", "the platform is empty")
    return From(
        location=ctx.location,
        original=ctx.node.original,
        base=args[0],
        name=name_text.lower() if name_text is not None else None,
        name_text=name_text,
        platform=platform,
    )


def _type_run(ctx: _Context) -> Run:
    flags = _parse_flags(ctx)
    mounts: list[Mount] = []
    for spec in flags.lists.get("mount", []):
        try:
            mounts.append(parse_mount(spec))
        except MountSpecError as err:
            raise ctx.flag_error("mount", str(err)) from None
    network = flags.strings.get("network")
    if network is not None and network not in NETWORK_MODES:
        raise ctx.flag_error(
            "network", f"unsupported network mode {network!r}; use one of {', '.join(NETWORK_MODES)}"
        )
    security = flags.strings.get("security")
    if security is not None and security not in SECURITY_MODES:
        raise ctx.flag_error(
            "security", f"unsupported security mode {security!r}; use one of {', '.join(SECURITY_MODES)}"
        )
    command = tuple(ctx.node.args)
    if not ctx.node.json_form and not "".join(command).strip() and not ctx.node.heredocs:
        raise ctx.error("RUN requires at least one argument")
    return Run(
        location=ctx.location,
        original=ctx.node.original,
        command=command,
        shell_form=not ctx.node.json_form,
        heredocs=ctx.node.heredocs,
        mounts=tuple(mounts),
        network=network,
        security=security,
        devices=tuple(flags.lists.get("device", [])),
    )


_HEREDOC_WORD = re.compile(r"([0-9]*)<<(-?)\s*([^<]*)")


def heredoc_marker(word: str) -> tuple[str, bool] | None:
    """``(name, chomp)`` when ``word`` is a heredoc marker like ``<<EOF`` or ``<<-'EOF'``, else None."""
    m = _HEREDOC_WORD.fullmatch(word)
    if m is None or m.group(3) == "":
        return None
    return m.group(3).replace('"', "").replace("'", ""), m.group(2) == "-"


def _sources_and_dest(ctx: _Context) -> tuple[tuple[str, ...], str, tuple[InlineSource, ...]]:
    args = ctx.node.args
    if len(args) < 2:
        raise ctx.error(
            f"{ctx.keyword} requires at least two arguments, but only one was provided. "
            "Destination could not be determined",
            hint=f"{ctx.keyword} <src>... <dest>",
        )
    *srcs, dest = args
    if not ctx.node.json_form and heredoc_marker(dest) is not None:
        raise ctx.error(f"{ctx.keyword} cannot accept a heredoc as a destination", needle=dest)
    by_name = {h.name: h for h in ctx.node.heredocs}
    unused = list(ctx.node.heredocs)
    sources: list[str] = []
    inline: list[InlineSource] = []
    for src in srcs:
        marker = None if ctx.node.json_form else heredoc_marker(src)
        if marker is None:
            sources.append(src)
            continue
        doc = by_name.get(marker[0]) or (unused[0] if unused else None)
        if doc is None:
            raise ctx.error(f"{ctx.keyword}: heredoc {src!r} has no body", needle=src)
        if doc in unused:
            unused.remove(doc)
        inline.append(InlineSource(path=doc.name, data=doc.content, expand=doc.expand))
    return tuple(sources), dest, tuple(inline)


def _checked_mode_flags(ctx: _Context, flags: _Flags) -> tuple[str | None, str | None]:
    chown = flags.strings.get("chown") or None
    chmod = flags.strings.get("chmod") or None
    if chown is not None and not _has_variable(chown):
        problem = validate_chown(chown)
        if problem:
            raise ctx.flag_error("chown", problem)
    if chmod is not None and not _has_variable(chmod):
        problem = validate_chmod(chmod)
        if problem:
            raise ctx.flag_error("chmod", problem)
    return chown, chmod


def _type_copy(ctx: _Context) -> Copy:
    flags = _parse_flags(ctx)
    sources, dest, inline = _sources_and_dest(ctx)
    chown, chmod = _checked_mode_flags(ctx, flags)
    from_ = flags.strings.get("from") or None
    if from_ is not None and re.search(r"\$.", from_):
        raise ctx.flag_error(
            "from", "doesn't support variable expansion", hint="define an alias stage instead: FROM $X AS x"
        )
    return Copy(
        location=ctx.location,
        original=ctx.node.original,
        sources=sources,
        dest=dest,
        inline=inline,
        from_=from_,
        chown=chown,
        chmod=chmod,
        link=flags.bools.get("link", False),
        parents=flags.bools.get("parents", False),
        excludes=tuple(flags.lists.get("exclude", [])),
    )


def _type_add(ctx: _Context) -> Add:
    flags = _parse_flags(ctx)
    sources, dest, inline = _sources_and_dest(ctx)
    chown, chmod = _checked_mode_flags(ctx, flags)
    checksum = flags.strings.get("checksum") or None
    if checksum is not None and not _has_variable(checksum):
        problem = validate_checksum(checksum)
        if problem:
            raise ctx.flag_error("checksum", problem)
    return Add(
        location=ctx.location,
        original=ctx.node.original,
        sources=sources,
        dest=dest,
        inline=inline,
        chown=chown,
        chmod=chmod,
        link=flags.bools.get("link", False),
        keep_git_dir=flags.bools.get("keep-git-dir", False),
        checksum=checksum,
        unpack=flags.bools.get("unpack"),
        excludes=tuple(flags.lists.get("exclude", [])),
    )


def _pairs(ctx: _Context) -> tuple[tuple[tuple[str, str], ...], bool]:
    args = ctx.node.args
    if not args:
        raise ctx.error(f"{ctx.keyword} requires at least one argument")
    if len(args) % 3 != 0:
        raise ctx.error(f"bad input to {ctx.keyword}, too many arguments")
    pairs: list[tuple[str, str]] = []
    legacy = False
    for i in range(0, len(args), 3):
        key, value, sep = args[i], args[i + 1], args[i + 2]
        if key == "":
            raise ctx.error(f"{ctx.keyword} names can not be blank")
        legacy = legacy or sep == ""
        pairs.append((key, value))
    return tuple(pairs), legacy


def _type_env(ctx: _Context) -> Env:
    _no_flags(ctx)
    pairs, legacy = _pairs(ctx)
    return Env(location=ctx.location, original=ctx.node.original, pairs=pairs, legacy=legacy)


def _type_label(ctx: _Context) -> Label:
    _no_flags(ctx)
    pairs, _ = _pairs(ctx)
    return Label(location=ctx.location, original=ctx.node.original, pairs=pairs)


def _type_arg(ctx: _Context) -> Arg:
    _no_flags(ctx)
    if not ctx.node.args:
        raise ctx.error("ARG requires at least one argument", hint="ARG NAME[=default]")
    decls: list[ArgDecl] = []
    for word in ctx.node.args:
        name, has_default, default = word.partition("=")
        if name == "":
            raise ctx.error("ARG names can not be blank", needle=word)
        decls.append(ArgDecl(name=name, default=default if has_default else None))
    return Arg(location=ctx.location, original=ctx.node.original, args=tuple(decls))


def _type_expose(ctx: _Context) -> Expose:
    _no_flags(ctx)
    if not ctx.node.args:
        raise ctx.error("EXPOSE requires at least one argument", hint="EXPOSE 8080[/tcp]")
    return Expose(location=ctx.location, original=ctx.node.original, ports=tuple(ctx.node.args))


def _type_volume(ctx: _Context) -> Volume:
    _no_flags(ctx)
    if not ctx.node.args:
        raise ctx.error("VOLUME requires at least one argument")
    paths = tuple(a.strip() for a in ctx.node.args)
    if any(p == "" for p in paths):
        raise ctx.error("VOLUME specified can not be an empty string")
    return Volume(location=ctx.location, original=ctx.node.original, paths=paths)


def _one_arg(ctx: _Context) -> str:
    _no_flags(ctx)
    if len(ctx.node.args) != 1 or ctx.node.args[0].strip() == "":
        raise ctx.error(f"{ctx.keyword} requires exactly one argument")
    return ctx.node.args[0]


def _type_user(ctx: _Context) -> User:
    return User(location=ctx.location, original=ctx.node.original, user=_one_arg(ctx))


def _type_workdir(ctx: _Context) -> Workdir:
    return Workdir(location=ctx.location, original=ctx.node.original, path=_one_arg(ctx))


def _type_maintainer(ctx: _Context) -> Maintainer:
    return Maintainer(location=ctx.location, original=ctx.node.original, name=_one_arg(ctx))


def _type_stopsignal(ctx: _Context) -> StopSignal:
    signal = _one_arg(ctx)
    if not _has_variable(signal):
        problem = validate_signal(signal)
        if problem:
            raise ctx.error(f"STOPSIGNAL: {problem}", hint="use a name like SIGTERM or a number")
    return StopSignal(location=ctx.location, original=ctx.node.original, signal=signal)


def _type_cmd(ctx: _Context) -> Cmd:
    _no_flags(ctx)
    return Cmd(
        location=ctx.location,
        original=ctx.node.original,
        command=tuple(ctx.node.args),
        shell_form=not ctx.node.json_form,
    )


def _type_entrypoint(ctx: _Context) -> Entrypoint:
    _no_flags(ctx)
    return Entrypoint(
        location=ctx.location,
        original=ctx.node.original,
        command=tuple(ctx.node.args),
        shell_form=not ctx.node.json_form,
    )


def _type_shell(ctx: _Context) -> Shell:
    _no_flags(ctx)
    if not ctx.node.args:
        raise ctx.error("SHELL requires at least one argument", hint='SHELL ["/bin/bash", "-c"]')
    if not ctx.node.json_form:
        raise ctx.error("SHELL requires the arguments to be in JSON form", hint='SHELL ["/bin/bash", "-c"]')
    return Shell(location=ctx.location, original=ctx.node.original, shell=tuple(ctx.node.args))


def _duration_flag(ctx: _Context, flags: _Flags, name: str) -> int:
    text = flags.strings.get(name, "")
    if text == "":
        return 0
    try:
        value = parse_duration(text)
    except ValueError:
        raise ctx.flag_error(
            name, f"invalid duration {text!r}", hint="durations look like 30s, 1m30s, 500ms"
        ) from None
    if value != 0 and value < MINIMUM_DURATION_NS:
        raise ctx.flag_error(name, f"{text!r} is less than the minimum of 1ms")
    return value


def _type_healthcheck(ctx: _Context) -> Healthcheck:
    args = ctx.node.args
    if not args:
        raise ctx.error(
            "HEALTHCHECK requires at least one argument", hint="HEALTHCHECK [opts] CMD cmd, or NONE"
        )
    kind = args[0].upper()
    flags = _parse_flags(ctx)
    rest = args[1:]
    if kind == "NONE":
        if rest:
            raise ctx.error("HEALTHCHECK NONE takes no arguments")
        # BuildKit ignores options on NONE (they are still checked above, as flags).
        return Healthcheck(location=ctx.location, original=ctx.node.original, test=("NONE",))
    if kind != "CMD":
        raise ctx.error(f"unknown type {args[0]!r} in HEALTHCHECK", needle=args[0], hint="try CMD (or NONE)")
    if not rest or (not ctx.node.json_form and not "".join(rest).strip()):
        raise ctx.error("missing command after HEALTHCHECK CMD")
    test = ("CMD", *rest) if ctx.node.json_form else ("CMD-SHELL", *rest)
    retries_text = flags.strings.get("retries", "")
    retries = 0
    if retries_text:
        if not re.fullmatch(r"[+-]?[0-9]+", retries_text):
            raise ctx.flag_error("retries", f"{retries_text!r} is not an integer")
        retries = int(retries_text)
        if retries < 0:
            raise ctx.flag_error("retries", f"cannot be negative ({retries})")
        if retries >= 1 << 31:
            raise ctx.flag_error("retries", f"{retries_text} is too large")
    return Healthcheck(
        location=ctx.location,
        original=ctx.node.original,
        test=test,
        interval=_duration_flag(ctx, flags, "interval"),
        timeout=_duration_flag(ctx, flags, "timeout"),
        start_period=_duration_flag(ctx, flags, "start-period"),
        start_interval=_duration_flag(ctx, flags, "start-interval"),
        retries=retries,
    )


_ONBUILD_PREFIX = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)


def _type_onbuild(ctx: _Context) -> Onbuild:
    _no_flags(ctx)
    inner = ctx.node.inner
    if inner is None:
        raise ctx.error("ONBUILD requires at least one argument", hint="ONBUILD <instruction>")
    trigger_keyword = inner.keyword.upper()
    if trigger_keyword == "ONBUILD":
        raise ctx.error("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger_keyword in ("FROM", "MAINTAINER"):
        raise ctx.error(f"{trigger_keyword} isn't allowed as an ONBUILD trigger", needle=inner.keyword_text)
    # The trigger shares the lines of its ONBUILD.
    if inner.start_line <= 0:
        inner = replace(inner, start_line=ctx.node.start_line, end_line=ctx.node.end_line)
    trigger = _type_node(inner, ctx.parsed)
    expression = _ONBUILD_PREFIX.sub("", ctx.node.original, count=1)
    if not expression.strip():
        expression = inner.original
    for doc in ctx.node.heredocs or inner.heredocs:
        if doc.content not in expression:
            expression += "\n" + doc.content + doc.name
    return Onbuild(location=ctx.location, original=ctx.node.original, trigger=trigger, expression=expression)


_TYPERS: Mapping[str, Callable[[_Context], Instruction]] = {
    "from": _type_from,
    "run": _type_run,
    "copy": _type_copy,
    "add": _type_add,
    "env": _type_env,
    "arg": _type_arg,
    "label": _type_label,
    "expose": _type_expose,
    "volume": _type_volume,
    "user": _type_user,
    "workdir": _type_workdir,
    "cmd": _type_cmd,
    "entrypoint": _type_entrypoint,
    "shell": _type_shell,
    "stopsignal": _type_stopsignal,
    "healthcheck": _type_healthcheck,
    "maintainer": _type_maintainer,
    "onbuild": _type_onbuild,
}


def _type_node(node: Node, parsed: ParsedDockerfile) -> Instruction:
    ctx = _Context(node, parsed)
    typer = _TYPERS.get(node.keyword.lower())
    if typer is None:
        word = node.keyword_text or node.keyword
        raise ctx.error(
            f"unknown instruction: {word.upper()}",
            needle=word,
            hint=did_you_mean(word, KEYWORDS) or "instructions are " + ", ".join(KEYWORDS),
        )
    return typer(ctx)


def parse_instruction(node: Node, parsed: ParsedDockerfile) -> Instruction:
    """Type one node (for example an ONBUILD trigger read from a base image's config)."""
    return _type_node(node, parsed)


def parse_dockerfile(parsed: ParsedDockerfile) -> Dockerfile:
    """Type every node and group the instructions into stages.

    Only ARG may come before the first FROM (those are the global ARGs). Raises InstructionError
    with the node's location for any invalid instruction.
    """
    global_args: list[Arg] = []
    stages: list[Stage] = []
    current: From | None = None
    body: list[Instruction] = []

    def close() -> None:
        if current is not None:
            stages.append(
                Stage(
                    index=len(stages),
                    name=current.name,
                    name_text=current.name_text,
                    base=current.base,
                    platform=current.platform,
                    instructions=tuple(body),
                    location=current.location,
                    from_=current,
                )
            )

    for node in parsed.nodes:
        instruction = _type_node(node, parsed)
        if isinstance(instruction, From):
            close()
            current, body = instruction, []
        elif current is None:
            if isinstance(instruction, Arg):
                global_args.append(instruction)
                continue
            raise InstructionError(
                f"no build stage in current context: {instruction.keyword} comes before the first FROM",
                location=instruction.location,
                hint="only ARG may come before the first FROM",
            )
        else:
            body.append(instruction)
    close()
    if not stages:
        location = (
            global_args[-1].location
            if global_args
            else SourceLocation(file=parsed.file, line=1, text=parsed.line_text(1))
        )
        message = "the Dockerfile contains no stages to build" if global_args else "file with no instructions"
        raise InstructionError(message, location=location, hint="add a FROM line")
    return Dockerfile(
        file=parsed.file,
        global_args=tuple(global_args),
        stages=tuple(stages),
        escape=parsed.directives.escape,
        source_lines=parsed.source_lines,
    )
