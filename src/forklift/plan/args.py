"""ARG scoping: the automatic platform ARGs, global ARGs, --build-arg values, and stage redeclaration.

BuildKit's rules (checklist sections 2 and 5):

* The automatic platform ARGs (and TARGETSTAGE) live in the global scope only; ``--build-arg`` can
  override them.
* A global ARG (declared before the first FROM) takes its ``--build-arg`` value, else its default
  expanded with the global ARGs before it. FROM lines see these and nothing else (no ENV).
* Inside a stage, an ARG is visible only once declared there. ``ARG NAME`` without a default takes
  the global value of the same name; ``--build-arg`` wins over any default.
"""

from __future__ import annotations

from collections.abc import Mapping

from forklift.dockerfile.instructions import Arg, ArgDecl, Mount, MountSpecError, parse_mount
from forklift.dockerfile.words import expand_word
from forklift.errors import ExpansionError, InstructionError, SourceLocation
from forklift.oci.model import Platform
from forklift.records import record

# Usable without an ARG declaration; kept out of history and cache keys unless declared.
PROXY_ARGS: frozenset[str] = frozenset(
    {
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "FTP_PROXY",
        "ftp_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    }
)
BUILTIN_ARGS: frozenset[str] = frozenset(
    {
        "BUILDKIT_BUILD_NAME",
        "BUILDKIT_CACHE_MOUNT_NS",
        "BUILDKIT_CONTEXT_KEEP_GIT_DIR",
        "BUILDKIT_INLINE_CACHE",
        "BUILDKIT_MULTI_PLATFORM",
        "BUILDKIT_SANDBOX_HOSTNAME",
        "BUILDKIT_SYNTAX",
        "SOURCE_DATE_EPOCH",
    }
)


def platform_text(platform: Platform) -> str:
    """``os/arch[/variant]``."""
    parts = [platform.os, platform.architecture] + ([platform.variant] if platform.variant else [])
    return "/".join(parts)


def platform_args(*, build: Platform, target: Platform, target_stage: str) -> dict[str, str]:
    """The automatic ARGs: BUILD*/TARGET* from the two platforms, and TARGETSTAGE."""
    return {
        "BUILDPLATFORM": platform_text(build),
        "BUILDOS": build.os,
        "BUILDARCH": build.architecture,
        "BUILDVARIANT": build.variant or "",
        "TARGETPLATFORM": platform_text(target),
        "TARGETOS": target.os,
        "TARGETARCH": target.architecture,
        "TARGETVARIANT": target.variant or "",
        "TARGETSTAGE": target_stage,
        "BUILDOSVERSION": build.os_version or "",
        "TARGETOSVERSION": target.os_version or "",
    }


def expand_at(text: str, env: Mapping[str, str], *, escape: str, location: SourceLocation) -> str:
    """``expand_word`` whose errors point at ``location`` when they carry none of their own."""
    try:
        return expand_word(text, env, escape=escape)
    except ExpansionError as err:
        if err.location is None:
            raise ExpansionError(err.message, location=location, hint=err.hint) from None
        raise


@record(kw_only=True)
class GlobalScope:
    """What FROM lines see: the declared global ARGs that have a value, plus the automatic ones."""

    values: Mapping[str, str]  # name -> value, as FROM expansion sees it
    declared: frozenset[str]  # names declared before the first FROM (with or without a value)
    automatic: Mapping[str, str]  # the platform ARGs after --build-arg overrides


def resolve_global_args(
    global_args: tuple[Arg, ...],
    *,
    build_args: Mapping[str, str],
    automatic: Mapping[str, str],
    escape: str = "\\",
) -> GlobalScope:
    """Evaluate the ARGs before the first FROM, in order, with --build-arg overrides."""
    auto = {name: build_args.get(name, value) for name, value in automatic.items()}
    values: dict[str, str] = dict(auto)
    declared: set[str] = set()
    for arg in global_args:
        # One instruction sees values as they were before it (ARG a=1 b=$a uses the old a).
        before = dict(values)
        for decl in arg.args:
            name = expand_at(decl.name, before, escape=escape, location=arg.location)
            declared.add(name)
            value = _declared_value(decl, name, before, build_args, {}, escape, arg.location)
            if value is not None:
                values[name] = value
    return GlobalScope(values=values, declared=frozenset(declared), automatic=auto)


def _declared_value(
    decl: ArgDecl,
    name: str,
    env: Mapping[str, str],
    build_args: Mapping[str, str],
    global_values: Mapping[str, str],
    escape: str,
    location: SourceLocation,
) -> str | None:
    if name in build_args:
        return build_args[name]
    if decl.default is not None:
        return expand_at(decl.default, env, escape=escape, location=location)
    return global_values.get(name)


def declare_stage_arg(
    decl: ArgDecl,
    *,
    env: Mapping[str, str],
    global_values: Mapping[str, str],
    build_args: Mapping[str, str],
    escape: str = "\\",
    location: SourceLocation,
) -> tuple[str, str | None]:
    """``(name, value)`` of an ARG declared inside a stage; value None means declared but unset.

    ``env`` is what the stage sees before this instruction (ARG and ENV values so far). A
    ``--build-arg`` wins; else the default, expanded with ``env``; else the global value.
    """
    name = expand_at(decl.name, env, escape=escape, location=location)
    return name, _declared_value(decl, name, env, build_args, global_values, escape, location)


def declared_names(global_args: tuple[Arg, ...], stage_args: tuple[Arg, ...]) -> frozenset[str]:
    """Every ARG name written in the file (unexpanded), for the "build-arg not consumed" warning."""
    return frozenset(decl.name for arg in (*global_args, *stage_args) for decl in arg.args)


def expand_mount(
    mount: Mount, env: Mapping[str, str], *, escape: str = "\\", location: SourceLocation
) -> Mount:
    """A RUN --mount with its option values expanded with ``env`` and checked again.

    The typed instruction keeps values holding ``$`` unchecked; this is the second, final pass
    (BuildKit expands every option value but ``from``). Errors point at ``location``.
    """
    if "$" not in mount.spec:
        return mount
    try:
        return parse_mount(
            mount.spec, expand=lambda value: expand_at(value, env, escape=escape, location=location)
        )
    except MountSpecError as err:
        raise InstructionError(f"RUN --mount: {err}", location=location) from None
