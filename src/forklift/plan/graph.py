"""Typed Dockerfile -> stage graph: bases, edges, ARG scoping, reference checks, pruning to targets.

Pure: no I/O. ``plan_build`` expands FROM lines and ``--platform`` with the global ARGs, resolves
every reference to another stage or an image, rejects forward references and cycles, and marks
which stages the targets need. A stage that is not needed is still checked (as BuildKit does) but
is never built, and its base image is never resolved.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field, replace
from enum import StrEnum
from typing import Any

from forklift.dockerfile.builtin_args import PLATFORM_ARGS
from forklift.dockerfile.instructions import Arg, Dockerfile, Onbuild, Stage
from forklift.errors import ImageError, PlanError, SourceLocation, did_you_mean
from forklift.oci.model import Platform
from forklift.oci.registry.reference import parse_reference
from forklift.plan.args import (
    BUILTIN_ARGS,
    PROXY_ARGS,
    GlobalScope,
    expand_at,
    platform_args,
    resolve_global_args,
)
from forklift.plan.lower import lower_instruction, lower_triggers
from forklift.plan.ops import (
    ImageRef,
    NamedContextRef,
    Op,
    ScratchRef,
    SourceOp,
    SourceRef,
    StageRef,
    Via,
)
from forklift.records import record


@record(kw_only=True)
class PlanOptions:
    """What the planner needs besides the Dockerfile."""

    targets: tuple[str, ...] = ()  # stage names; empty: the last stage
    build_args: Mapping[str, str] = field(default_factory=dict)
    build_platform: Platform | None = None  # None: this machine
    target_platform: Platform | None = None  # None: the build platform
    named_contexts: frozenset[str] = frozenset()  # --build-context names (lower-case)


class BaseKind(StrEnum):
    """What a stage starts from."""

    IMAGE = "image"
    STAGE = "stage"
    SCRATCH = "scratch"
    CONTEXT = "context"  # a --build-context that replaces the image or stage of that name


@record(kw_only=True)
class StageBase:
    """A stage's base: ``text`` as written, ``ref`` expanded (image reference, stage name, ...)."""

    kind: BaseKind
    text: str
    ref: str
    stage_index: int | None = None  # for kind STAGE


@record(kw_only=True)
class StageEdge:
    """``dependent`` uses ``dependency`` through ``via`` at ``location``."""

    dependency: int
    dependent: int
    via: Via
    location: SourceLocation

    @property
    def line(self) -> int:
        """The 1-based line of the instruction that makes the edge."""
        return self.location.line


@record(kw_only=True)
class ImageUse:
    """An external image (or named context) a stage reads through ``--from`` / ``--mount from=``."""

    ref: str
    stage: int
    via: Via
    location: SourceLocation
    named_context: bool = False


@record(kw_only=True)
class PlannedStage:
    """One stage of the plan: its base, its ops, what it depends on, and whether it is built."""

    index: int
    name: str | None
    base: StageBase
    platform: str | None  # FROM --platform, expanded
    stage: Stage
    ops: tuple[Op, ...]  # SourceOp first, then inherited ONBUILD triggers, then the instructions
    depends_on: tuple[StageEdge, ...]
    images: tuple[ImageUse, ...]
    built: bool
    skipped_reason: str | None

    @property
    def display_name(self) -> str:
        """The name, or ``stage-N``."""
        return self.name if self.name is not None else f"stage-{self.index}"

    @property
    def location(self) -> SourceLocation:
        """Where the stage's FROM is."""
        return self.stage.location


@record(kw_only=True)
class StageGraph:
    """The whole plan. ``order`` is topological over every stage; ``build_order`` over built ones."""

    file: str
    stages: tuple[PlannedStage, ...]
    edges: tuple[StageEdge, ...]
    images: tuple[ImageUse, ...]
    order: tuple[int, ...]
    build_order: tuple[int, ...]
    targets: tuple[int, ...]
    global_scope: GlobalScope
    build_args: Mapping[str, str]
    unused_build_args: tuple[str, ...]
    warnings: tuple[str, ...]
    escape: str = "\\"

    def stage(self, key: str | int) -> PlannedStage:
        """A stage by index or by name (case-insensitive; the last definition wins)."""
        if isinstance(key, int):
            return self.stages[key]
        lowered = key.lower()
        for st in reversed(self.stages):
            if st.name == lowered:
                return st
        raise PlanError(f"no stage named {key!r}", hint=_names_hint(key, self.stages))

    @property
    def built_stages(self) -> tuple[PlannedStage, ...]:
        """The stages to build, in build order."""
        return tuple(self.stages[i] for i in self.build_order)

    def needed_by(self, target: int) -> set[int]:
        """``target`` and every stage it needs (FROM, COPY --from, RUN --mount from=), transitively."""
        return stages_needed((target,), [st.depends_on for st in self.stages])


def stages_needed(targets: Iterable[int], edges_by_stage: Sequence[Iterable[StageEdge]]) -> set[int]:
    """The indexes of ``targets`` and of every stage they depend on through ``edges_by_stage``."""
    needed: set[int] = set()
    pending = list(targets)
    while pending:
        i = pending.pop()
        if i in needed:
            continue
        needed.add(i)
        pending.extend(e.dependency for e in edges_by_stage[i])
    return needed


# ---------------------------------------------------------------------------------------------
# Image references, to tell an image from a mistyped stage name
# ---------------------------------------------------------------------------------------------


def image_reference_problem(text: str) -> str | None:
    """Why ``text`` is not an image reference Docker accepts, or None when it is one."""
    try:
        parse_reference(text)
    except ImageError as err:
        return err.message
    return None


def is_image_reference(text: str) -> bool:
    """Whether ``text`` is a valid image reference (``name[:tag][@digest]``, lower-case repository)."""
    return image_reference_problem(text) is None


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _names_hint(word: str, stages: tuple[Any, ...]) -> str:
    names = [s.name for s in stages if s.name is not None]
    if not names:
        return f"this Dockerfile has no named stages (stages are numbered 0-{len(stages) - 1})"
    close = did_you_mean(word, names)
    listing = "stages: " + ", ".join(dict.fromkeys(names))
    return f"{close} ({listing})" if close else listing


def topological_order(count: int, edges: tuple[StageEdge, ...], names: tuple[str, ...]) -> tuple[int, ...]:
    """Stage indexes so that every dependency comes before its dependents (ties: file order).

    A cycle is a PlanError naming every stage in it.
    """
    deps: dict[int, set[int]] = {i: set() for i in range(count)}
    for e in edges:
        deps[e.dependent].add(e.dependency)
    done: set[int] = set()
    order: list[int] = []
    remaining = list(range(count))
    while remaining:
        ready = [i for i in remaining if deps[i] <= done]
        if not ready:
            # Reverse the dependency walk so each arrow reads "is used by", as in the drawings.
            found = _find_cycle(remaining, deps)[::-1]
            first = found.index(min(found))
            cycle = found[first:] + found[:first]
            where = next((e.location for e in edges if e.dependent == cycle[0]), None)
            path = " -> ".join(names[i] for i in (*cycle, cycle[0]))
            raise PlanError(f"circular dependency between stages: {path}", location=where)
        for i in ready:
            order.append(i)
            done.add(i)
        remaining = [i for i in remaining if i not in done]
    return tuple(order)


def _find_cycle(remaining: list[int], deps: Mapping[int, set[int]]) -> list[int]:
    """One cycle among ``remaining`` (each of them waits on another one of them)."""
    pending = set(remaining)
    node = remaining[0]
    seen: list[int] = []
    while node not in seen:
        seen.append(node)
        node = min(d for d in deps[node] if d in pending)
    cycle = seen[seen.index(node) :]
    # Report in file order, starting from the earliest stage.
    start = cycle.index(min(cycle))
    return cycle[start:] + cycle[:start]


def _point_at(location: SourceLocation, needle: str) -> SourceLocation:
    """``location`` with its column on the first ``needle`` of its line (unchanged if absent)."""
    found = location.text.find(needle) if location.text else -1
    return replace(location, column=found + 1) if found >= 0 else location


def _target_stage_name(dockerfile: Dockerfile, targets: tuple[str, ...]) -> str:
    if targets:
        return targets[0].lower()
    last = dockerfile.stages[-1]
    return last.name if last.name is not None else "default"


# ---------------------------------------------------------------------------------------------
# The planner
# ---------------------------------------------------------------------------------------------


class _StagePlanner:
    """Resolves the references made inside one stage and records the edges they make."""

    def __init__(self, planner: _Planner, index: int) -> None:
        self.planner = planner
        self.index = index
        self.edges: list[StageEdge] = []
        self.images: list[ImageUse] = []

    def __call__(self, value: str, *, via: Via, location: SourceLocation, allow_index: bool) -> SourceRef:
        location = _point_at(location, "--from=" if via is Via.COPY_FROM else "from=")
        p = self.planner
        stages = p.dockerfile.stages
        what = f"{via.value}={value}" if via is Via.COPY_FROM else f"RUN --mount from={value}"
        if allow_index and re.fullmatch(r"[0-9]+", value):
            target = int(value)
            if target >= len(stages):
                raise PlanError(
                    f"{what}: there is no stage {target} (stages are numbered 0-{len(stages) - 1})",
                    location=location,
                    hint=_names_hint(value, stages),
                )
            return self._stage_ref(target, what, via, location)
        lowered = value.lower()
        if lowered in p.options.named_contexts:
            self.images.append(
                ImageUse(ref=lowered, stage=self.index, via=via, location=location, named_context=True)
            )
            return NamedContextRef(name=lowered)
        if lowered in p.last_by_name:
            return self._stage_ref(p.last_by_name[lowered], what, via, location)
        if not is_image_reference(value):
            raise PlanError(
                f"{what}: no stage is named {value!r}, and it is not a valid image reference",
                location=location,
                hint=_names_hint(value, stages),
            )
        close = did_you_mean(value, [s.name for s in stages if s.name is not None])
        if close:
            p.warnings.append(
                f"{location}: {what} is not a stage of this Dockerfile, so it is pulled as an image ({close})"
            )
        self.images.append(ImageUse(ref=value, stage=self.index, via=via, location=location))
        return ImageRef(ref=value)

    def _stage_ref(self, target: int, what: str, via: Via, location: SourceLocation) -> StageRef:
        stages = self.planner.dockerfile.stages
        if target == self.index:
            raise PlanError(f"{what}: a stage cannot use itself", location=location)
        if target > self.index:
            raise PlanError(
                f"{what}: stage {stages[target].display_name!r} needs to be defined before the current "
                f"stage {stages[self.index].display_name!r}",
                location=location,
                hint=f"move the stage defined on line {stages[target].location.line} above line "
                f"{stages[self.index].location.line}",
            )
        self.edges.append(StageEdge(dependency=target, dependent=self.index, via=via, location=location))
        return StageRef(index=target, name=stages[target].name)


class _Planner:
    def __init__(self, dockerfile: Dockerfile, options: PlanOptions, scope: GlobalScope) -> None:
        self.dockerfile = dockerfile
        self.options = options
        self.scope = scope
        self.warnings: list[str] = []
        # --from and --target use the last definition of a duplicated name.
        self.last_by_name: dict[str, int] = {}
        for st in dockerfile.stages:
            if st.name is not None:
                self.last_by_name[st.name] = st.index

    def base_of(
        self, stage: Stage, stage_planner: _StagePlanner
    ) -> tuple[StageBase, StageRef | ImageRef | NamedContextRef | ScratchRef]:
        df = self.dockerfile
        ref = expand_at(stage.base, self.scope.values, escape=df.escape, location=stage.location)
        if ref.strip() == "":
            raise PlanError(
                f"base name ({stage.base}) should not be blank",
                location=stage.location,
                hint="a global ARG used in FROM needs a value: a default or --build-arg",
            )
        if ref == "scratch":
            return StageBase(kind=BaseKind.SCRATCH, text=stage.base, ref=ref), ScratchRef()
        lowered = ref.lower()
        # FROM <name> finds the most recent earlier stage of that name. BuildKit compares case-
        # sensitively (moby/buildkit#2003); we ignore case, as --from and --target do.
        earlier = [s.index for s in df.stages[: stage.index] if s.name == lowered]
        if earlier and lowered not in self.options.named_contexts:
            target = earlier[-1]
            stage_planner.edges.append(
                StageEdge(dependency=target, dependent=stage.index, via=Via.FROM, location=stage.location)
            )
            base = StageBase(kind=BaseKind.STAGE, text=stage.base, ref=lowered, stage_index=target)
            return base, StageRef(index=target, name=lowered)
        if lowered in self.options.named_contexts:
            return StageBase(kind=BaseKind.CONTEXT, text=stage.base, ref=lowered), NamedContextRef(
                name=lowered
            )
        problem = image_reference_problem(ref)
        if problem is not None:
            later = [s for s in df.stages[stage.index :] if s.name == lowered]
            hint = (
                f"stage {lowered!r} is defined later, on line {later[0].location.line}; FROM can only use "
                "an earlier stage"
                if later
                else _names_hint(ref, df.stages[: stage.index])
                if stage.index
                else None
            )
            raise PlanError(
                f"FROM {ref}: not a stage name or a valid image reference ({problem})",
                location=stage.location,
                hint=hint,
            )
        later = [s for s in df.stages[stage.index + 1 :] if s.name == lowered]
        if later:
            self.warnings.append(
                f"{stage.location}: FROM {ref} uses the image {ref!r}: stage {lowered!r} is defined later, "
                f"on line {later[0].location.line}, and FROM can only use an earlier stage"
            )
        return StageBase(kind=BaseKind.IMAGE, text=stage.base, ref=ref), ImageRef(ref=ref)

    def platform_of(self, stage: Stage) -> str | None:
        if stage.platform is None:
            return None
        value = expand_at(
            stage.platform, self.scope.values, escape=self.dockerfile.escape, location=stage.location
        )
        if value.strip() == "":
            raise PlanError(
                f"FROM --platform={stage.platform} is empty after expansion",
                location=stage.location,
                hint="use $BUILDPLATFORM or $TARGETPLATFORM, or declare the ARG before the first FROM",
            )
        try:
            Platform.parse(value)
        except Exception as err:  # the model's own error type says why
            raise PlanError(f"FROM --platform: {err}", location=stage.location) from None
        return value


def _resolve_targets(dockerfile: Dockerfile, targets: tuple[str, ...]) -> tuple[int, ...]:
    if not targets:
        return (dockerfile.stages[-1].index,)
    found: list[int] = []
    for target in targets:
        lowered = target.lower()
        matches = [s.index for s in dockerfile.stages if s.name == lowered]
        if not matches:
            raise PlanError(
                f"target stage {target!r} could not be found", hint=_names_hint(target, dockerfile.stages)
            )
        if matches[-1] not in found:
            found.append(matches[-1])
    return tuple(found)


def _skip_reason(targets: tuple[int, ...], stages: tuple[Stage, ...]) -> str:
    names = [f"'{stages[t].display_name}'" for t in targets]
    if len(names) == 1:
        return f"not needed by target {names[0]}"
    return f"not needed by targets {', '.join(names[:-1])} and {names[-1]}"


def plan_build(dockerfile: Dockerfile, options: PlanOptions | None = None) -> StageGraph:
    """Plan a build: the stage graph with every reference resolved and pruned to the targets.

    Raises PlanError (bad target, forward reference, unknown --from, cycle, blank base) and
    ExpansionError (a bad ``${...}`` in FROM or --platform), each with its location.
    """
    options = options or PlanOptions()
    build_platform = options.build_platform or Platform.host()
    target_platform = options.target_platform or build_platform
    target_indexes = _resolve_targets(dockerfile, options.targets)
    automatic = platform_args(
        build=build_platform,
        target=target_platform,
        target_stage=_target_stage_name(dockerfile, options.targets),
    )
    scope = resolve_global_args(
        dockerfile.global_args,
        build_args=options.build_args,
        automatic=automatic,
        escape=dockerfile.escape,
    )
    planner = _Planner(dockerfile, options, scope)
    _warn_duplicate_names(dockerfile, planner.warnings)

    bases: list[StageBase] = []
    platforms: list[str | None] = []
    ops: list[tuple[Op, ...]] = []
    stage_edges: list[list[StageEdge]] = []
    stage_images: list[list[ImageUse]] = []
    for stage in dockerfile.stages:
        sp = _StagePlanner(planner, stage.index)
        base, source = planner.base_of(stage, sp)
        platform = planner.platform_of(stage)
        stage_ops: list[Op] = [
            SourceOp(source=source, platform=platform, location=stage.location, text=stage.from_.original)
        ]
        if base.stage_index is not None:
            # ONBUILD triggers of a base stage run right after FROM (not passed on to grandchildren).
            parent = dockerfile.stages[base.stage_index]
            triggers = tuple(i for i in parent.instructions if isinstance(i, Onbuild))
            stage_ops.extend(lower_triggers(triggers, sp))
        for instruction in stage.instructions:
            stage_ops.append(lower_instruction(instruction, sp))
        bases.append(base)
        platforms.append(platform)
        ops.append(tuple(stage_ops))
        stage_edges.append(sp.edges)
        stage_images.append(sp.images)

    edges = tuple(e for es in stage_edges for e in es)
    names = tuple(s.display_name for s in dockerfile.stages)
    order = topological_order(len(dockerfile.stages), edges, names)

    needed = stages_needed(target_indexes, stage_edges)
    reason = _skip_reason(target_indexes, dockerfile.stages)

    planned = tuple(
        PlannedStage(
            index=stage.index,
            name=stage.name,
            base=bases[stage.index],
            platform=platforms[stage.index],
            stage=stage,
            ops=ops[stage.index],
            depends_on=tuple(stage_edges[stage.index]),
            images=tuple(stage_images[stage.index]),
            built=stage.index in needed,
            skipped_reason=None if stage.index in needed else reason,
        )
        for stage in dockerfile.stages
    )
    return StageGraph(
        file=dockerfile.file,
        stages=planned,
        edges=edges,
        images=tuple(u for us in stage_images for u in us),
        order=order,
        build_order=tuple(i for i in order if i in needed),
        targets=target_indexes,
        global_scope=scope,
        build_args=dict(options.build_args),
        unused_build_args=_unused_build_args(dockerfile, options.build_args),
        warnings=tuple(planner.warnings),
        escape=dockerfile.escape,
    )


def _warn_duplicate_names(dockerfile: Dockerfile, warnings: list[str]) -> None:
    seen: dict[str, int] = {}
    for st in dockerfile.stages:
        if st.name is None:
            continue
        if st.name in seen:
            warnings.append(
                f"{st.location}: duplicate stage name {st.name!r} (also on line "
                f"{dockerfile.stages[seen[st.name]].location.line}); --from and --target use the last one"
            )
        seen[st.name] = st.index


def _unused_build_args(dockerfile: Dockerfile, build_args: Mapping[str, str]) -> tuple[str, ...]:
    declared = {decl.name for arg in (*dockerfile.global_args, *_stage_args(dockerfile)) for decl in arg.args}
    known = declared | set(PLATFORM_ARGS) | PROXY_ARGS | BUILTIN_ARGS
    return tuple(sorted(name for name in build_args if name not in known))


def _stage_args(dockerfile: Dockerfile) -> list[Arg]:
    out: list[Arg] = []
    for st in dockerfile.stages:
        for ins in st.instructions:
            if isinstance(ins, Arg):
                out.append(ins)
            elif isinstance(ins, Onbuild) and isinstance(ins.trigger, Arg):
                out.append(ins.trigger)
    return out


def stage_graph_json(graph: StageGraph) -> dict[str, Any]:
    """The graph as plain JSON data (what ``forklift graph --format json`` prints)."""
    return {
        "file": graph.file,
        "targets": [graph.stages[t].display_name for t in graph.targets],
        "build_order": [graph.stages[i].display_name for i in graph.build_order],
        "stages": [
            {
                "index": st.index,
                "name": st.name,
                "base": {"kind": st.base.kind.value, "ref": st.base.ref, "text": st.base.text},
                "platform": st.platform,
                "depends_on": [
                    {
                        "stage": graph.stages[e.dependency].display_name,
                        "index": e.dependency,
                        "instruction": e.via.value,
                        "line": e.line,
                    }
                    for e in st.depends_on
                ],
                "images": [
                    {"ref": u.ref, "instruction": u.via.value, "line": u.location.line} for u in st.images
                ],
                "built": st.built,
                "skipped_reason": st.skipped_reason,
            }
            for st in graph.stages
        ],
        "unused_build_args": list(graph.unused_build_args),
        "warnings": list(graph.warnings),
    }
