"""The typed plan an executor consumes: one op per instruction, in stage order.

Values are still as written (unexpanded): expansion needs the stage's variables at run time, which
include ENV from the base image. References to other stages and images (FROM, COPY --from,
RUN --mount from=) are already resolved to a ``SourceRef``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeAlias

from forklift.dockerfile.instructions import (
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    InlineSource,
    Label,
    Maintainer,
    Mount,
    Onbuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from forklift.errors import SourceLocation
from forklift.records import record

# ---------------------------------------------------------------------------------------------
# Where content comes from
# ---------------------------------------------------------------------------------------------


@record(kw_only=True)
class StageRef:
    """The result of another stage of this Dockerfile."""

    index: int
    name: str | None


@record(kw_only=True)
class ImageRef:
    """An image by reference (``debian:bookworm``, ``ghcr.io/x/y@sha256:...``), expanded."""

    ref: str


@record(kw_only=True)
class NamedContextRef:
    """A ``--build-context NAME=...`` that replaces a stage or an image of that name."""

    name: str


@record(kw_only=True)
class MainContextRef:
    """The build context directory (COPY and ADD without --from, bind mounts without from=)."""


@record(kw_only=True)
class ScratchRef:
    """``FROM scratch``: an empty filesystem and an empty config."""


SourceRef: TypeAlias = StageRef | ImageRef | NamedContextRef | MainContextRef | ScratchRef


class Via(StrEnum):
    """The instruction through which a stage uses another stage or an image."""

    FROM = "FROM"
    COPY_FROM = "COPY --from"
    MOUNT_FROM = "RUN --mount from"


# ---------------------------------------------------------------------------------------------
# Ops
# ---------------------------------------------------------------------------------------------


@record(kw_only=True)
class SourceOp:
    """FROM: the stage starts from ``source``. ``platform`` is FROM --platform, expanded (or None)."""

    source: StageRef | ImageRef | NamedContextRef | ScratchRef
    platform: str | None
    location: SourceLocation
    text: str


@record(kw_only=True)
class InlineFile:
    """A file the executor writes and mounts read-only for a RUN (a heredoc script with ``#!``)."""

    directory: str  # mount point, e.g. /dev/pipes/
    name: str
    data: str
    mode: int = 0o755


@record(kw_only=True)
class ResolvedMount:
    """A RUN --mount with its ``from=`` resolved (``source_ref`` None: the main context or a cache)."""

    mount: Mount
    source_ref: SourceRef | None


@record(kw_only=True)
class ExecOp:
    """RUN: run ``args``; with ``shell_form`` the executor prepends the stage's SHELL.

    ``args`` already accounts for heredocs (BuildKit's rules): a lone heredoc runs its body (or, with
    a ``#!`` line, the file in ``inline_files``); other heredocs are passed to the shell verbatim.
    """

    args: tuple[str, ...]
    shell_form: bool
    inline_files: tuple[InlineFile, ...]
    mounts: tuple[ResolvedMount, ...]
    network: str  # default | none | host
    security: str  # sandbox | insecure
    instruction: Run
    location: SourceLocation
    text: str


@record(kw_only=True)
class CopyOp:
    """COPY or ADD (``instruction`` says which): ``paths`` from ``source``, heredocs in ``inline``.

    ``source`` is MainContextRef for the build context (.dockerignore applies), else the stage,
    image or named context of --from (.dockerignore does not apply).
    """

    source: SourceRef
    paths: tuple[str, ...]
    inline: tuple[InlineSource, ...]
    dest: str
    chown: str | None
    chmod: str | None
    link: bool
    parents: bool
    excludes: tuple[str, ...]
    instruction: Copy | Add
    location: SourceLocation
    text: str


ConfigInstruction: TypeAlias = (
    Env
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
    | Onbuild
    | Maintainer
)


@record(kw_only=True)
class ConfigOp:
    """An instruction that changes the image config (or the build's variables) and adds no files.

    WORKDIR also creates its directory when missing; the executor does that.
    """

    instruction: ConfigInstruction
    location: SourceLocation
    text: str


Op: TypeAlias = SourceOp | ExecOp | CopyOp | ConfigOp
