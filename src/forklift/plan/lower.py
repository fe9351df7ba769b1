"""Instruction -> op, one small function per instruction.

References to other stages (COPY --from, RUN --mount from=) are resolved through a ``Resolver`` the
planner passes in, so the planner records every edge in one place.
"""

from __future__ import annotations

import posixpath
from typing import Protocol

from forklift.dockerfile.instructions import (
    Add,
    Copy,
    From,
    Instruction,
    Mount,
    Onbuild,
    Run,
    heredoc_marker,
)
from forklift.errors import PlanError, SourceLocation
from forklift.plan.ops import (
    ConfigOp,
    CopyOp,
    ExecOp,
    InlineFile,
    MainContextRef,
    Op,
    ResolvedMount,
    SourceRef,
    Via,
)

# Where BuildKit mounts the script of a ``RUN <<EOF`` whose body starts with ``#!``.
HEREDOC_SCRIPT_DIR = "/dev/pipes/"


class Resolver(Protocol):
    """Turns a ``--from`` value into a reference, recording the edge it makes."""

    def __call__(self, value: str, *, via: Via, location: SourceLocation, allow_index: bool) -> SourceRef:
        """Resolve ``value`` (a stage name, a stage index when ``allow_index``, or an image)."""
        ...


def run_arguments(run: Run) -> tuple[tuple[str, ...], tuple[InlineFile, ...]]:
    """The argv (or shell line) of a RUN after BuildKit's heredoc rules, and files to mount.

    A RUN that is only ``<<EOF`` runs the body with the shell; with a ``#!`` first line the body
    becomes an executable file that is run instead. Any other heredoc use hands the whole text
    (command line, then each body and its terminator) to the shell.
    """
    if not run.heredocs or not run.shell_form:
        return run.command, ()
    line = run.command[0] if run.command else ""
    if len(run.command) == 1 and heredoc_marker(line.strip()) is not None:
        doc = run.heredocs[0]
        if doc.content.startswith("#!"):
            script = InlineFile(directory=HEREDOC_SCRIPT_DIR, name=doc.name, data=doc.content)
            return (posixpath.join(HEREDOC_SCRIPT_DIR, doc.name),), (script,)
        return (doc.content,), ()
    full = line
    for doc in run.heredocs:
        full += "\n" + doc.content + doc.name
    return (full,), ()


def _resolve_mount(mount: Mount, resolve: Resolver, location: SourceLocation) -> ResolvedMount:
    if mount.from_:
        # RUN --mount from= has no index form: a number is a stage name or an image.
        ref = resolve(mount.from_, via=Via.MOUNT_FROM, location=location, allow_index=False)
        return ResolvedMount(mount=mount, source_ref=ref)
    if mount.type == "bind":
        return ResolvedMount(mount=mount, source_ref=MainContextRef())
    return ResolvedMount(mount=mount, source_ref=None)


def lower_run(run: Run, resolve: Resolver) -> ExecOp:
    """RUN -> ExecOp."""
    args, files = run_arguments(run)
    return ExecOp(
        args=args,
        shell_form=run.shell_form,
        inline_files=files,
        mounts=tuple(_resolve_mount(m, resolve, run.location) for m in run.mounts),
        network=run.network or "default",
        security=run.security or "sandbox",
        instruction=run,
        location=run.location,
        text=run.original,
    )


def lower_copy(copy: Copy, resolve: Resolver) -> CopyOp:
    """COPY -> CopyOp; ``--from`` takes a stage name, a stage index, or an image."""
    source: SourceRef = MainContextRef()
    if copy.from_:
        source = resolve(copy.from_, via=Via.COPY_FROM, location=copy.location, allow_index=True)
    return CopyOp(
        source=source,
        paths=copy.sources,
        inline=copy.inline,
        dest=copy.dest,
        chown=copy.chown,
        chmod=copy.chmod,
        link=copy.link,
        parents=copy.parents,
        excludes=copy.excludes,
        instruction=copy,
        location=copy.location,
        text=copy.original,
    )


def lower_add(add: Add) -> CopyOp:
    """ADD -> CopyOp (ADD has no --from: its sources are the context, URLs or git repositories)."""
    return CopyOp(
        source=MainContextRef(),
        paths=add.sources,
        inline=add.inline,
        dest=add.dest,
        chown=add.chown,
        chmod=add.chmod,
        link=add.link,
        parents=False,
        excludes=add.excludes,
        instruction=add,
        location=add.location,
        text=add.original,
    )


def lower_instruction(instruction: Instruction, resolve: Resolver) -> Op:
    """Any instruction but FROM -> its op (FROM becomes the stage's SourceOp in the planner)."""
    if isinstance(instruction, Run):
        return lower_run(instruction, resolve)
    if isinstance(instruction, Copy):
        return lower_copy(instruction, resolve)
    if isinstance(instruction, Add):
        return lower_add(instruction)
    if isinstance(instruction, From):
        raise PlanError("FROM starts a stage; it has no op of its own", location=instruction.location)
    return ConfigOp(instruction=instruction, location=instruction.location, text=instruction.original)


def lower_triggers(triggers: tuple[Onbuild, ...], resolve: Resolver) -> tuple[Op, ...]:
    """The ops of ONBUILD triggers inherited from a base stage, run right after FROM, in order."""
    return tuple(lower_instruction(t.trigger, resolve) for t in triggers)
