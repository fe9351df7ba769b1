"""The whole story on one screen: parse -> plan -> execute -> export.

``build(options)`` reads the Dockerfile, plans the stage graph (pruned to the targets), runs the
stages the targets need (independent ones at the same time) through the persistent cache, writes
each target's image into the store, and hands it to the outputs: store tags, an OCI layout or
archive, a docker-archive, a root filesystem directory or tarball. It emits progress events and
never prints.

Where the parts live: the memo that answers an unchanged build at once is ``execute.cache.memo``; the
runtime and overlayfs probes are ``execute.runtime_setup``; ``--cache-from``/``--cache-to`` are
``execute.cache.tasks``; writing an image and its outputs is ``execute.export``.
"""

from __future__ import annotations

import hashlib
import itertools
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forklift import __version__
from forklift.errors import ForkliftError
from forklift.execute.cache.tasks import (
    export_cache_to,
    import_cache_from,
    parse_cache_specs,
    stage_cache_keys,
)
from forklift.execute.options import OUTPUT_TYPES, Entitlements, NamedContext, OutputSpec, SecretSource
from forklift.records import record
from forklift.report.progress import BuildFinished, Event, EventSink, StepStarted, discard

# Everything else is imported where it is used: a build whose inputs did not change is answered
# from the memo (execute.cache.memo) without loading the planner or the engine.
if TYPE_CHECKING:
    from forklift.execute.cache.specs import CacheDestination, CacheSource
    from forklift.execute.engine import BuildEnv, StageResult
    from forklift.oci.image import Image
    from forklift.oci.model import Platform
    from forklift.plan.graph import StageGraph
    from forklift.report.buildrecord import BuildRecord

__all__ = ["OUTPUT_TYPES", "BuildOptions", "BuildResult", "BuiltImage", "OutputSpec", "build"]


@record(kw_only=True)
class BuildOptions:
    """Everything a build needs; mirrors ``forklift build``'s flags (buildx meanings)."""

    context: Path
    root: Path  # the store
    dockerfile: Path | None = None  # default: CONTEXT/Dockerfile
    dockerfile_text: str | None = None  # the Dockerfile itself (``-f -``); wins over ``dockerfile``
    tags: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    no_cache: bool = False
    no_cache_filter: tuple[str, ...] = ()
    network: str = "default"
    secrets: tuple[SecretSource, ...] = ()
    ssh: Mapping[str, str] = field(default_factory=dict)
    outputs: tuple[OutputSpec, ...] = ()
    iidfile: Path | None = None
    jobs: int | None = None
    runtime: str | None = None
    source_date_epoch: int | None = None
    platform: str | None = None
    # NAME -> DIR | docker-image://REF | oci-layout://PATH[:TAG]
    build_contexts: Mapping[str, str] = field(default_factory=dict)
    max_size: str | None = None  # fail when the image is bigger (``50MB``, ``1GiB``, bytes)
    overlay: bool | None = None  # None: use overlayfs where it mounts; False: the copy fallback
    # --cache-to / --cache-from: buildx specs (``type=registry,ref=REF,mode=max``,
    # ``type=local,dest=DIR`` / ``type=local,src=DIR``) or parsed execute.cache.specs values.
    cache_to: tuple[str | CacheDestination, ...] = ()
    cache_from: tuple[str | CacheSource, ...] = ()
    pull: bool = False  # --pull: check the registry for every FROM image, even one the store has
    insecure_registries: frozenset[str] = frozenset()  # --insecure-registry: plain HTTP to these hosts
    # --allow: entitlements (security.insecure, device[=NAME], network.host), as buildx takes them.
    allow: tuple[str, ...] = ()
    cdi_spec_dirs: tuple[Path, ...] = ()  # --cdi-spec-dir: CDI specs (default /etc/cdi, /var/run/cdi)


@record
class BuiltImage:
    """One target's result: its ID (config digest), digest (manifest) and tags; ``image`` reads it
    from the store."""

    target: str
    image_id: str
    digest: str
    tags: tuple[str, ...]
    store_root: Path

    @cached_property
    def image(self) -> Image:
        """The image, read from the store."""
        from forklift.oci.image import StoreImage
        from forklift.oci.model import Digest
        from forklift.oci.store import Store

        return StoreImage(Store(self.store_root), Digest.parse(self.digest))


@record
class BuildResult:
    """What ``build`` returns: one ``BuiltImage`` per target, and how many steps ran vs were cached."""

    images: tuple[BuiltImage, ...]
    seconds: float
    stage_sizes: Mapping[str, int] = field(default_factory=dict)

    @property
    def image(self) -> BuiltImage:
        """The (first) target's image."""
        return self.images[0]


def build(options: BuildOptions, *, events: EventSink = discard) -> BuildResult:
    """Build the Dockerfile's targets and export them; raises ForkliftError subclasses for user errors."""
    from forklift.execute.cache import memo

    started = time.monotonic()
    cache_to, cache_from = parse_cache_specs(options.cache_to, options.cache_from)  # before any work
    dockerfile = _read_dockerfile(options)
    memo_key = _memo_key(options, dockerfile)
    # A build answered from the memo records no cache keys (nothing to export), and --pull must ask
    # the registry: both run the stages (every step still a cache hit when nothing changed).
    use_memo = not (options.no_cache or options.no_cache_filter or cache_to or options.pull)
    if memo_key is not None and use_memo:
        remembered = memo.load_valid(options.root, memo_key, dockerfile.context)
        if remembered is not None:
            return _replay(options, remembered, events, started)
    from forklift.execute.runtime_setup import build_state_dir

    steps = _StepTitles(events)
    graph, platform = _plan(options, dockerfile)
    from forklift.execute.ops.exec import check_insecure_allowed  # BuildKit checks before any work

    check_insecure_allowed(
        (op for st in graph.built_stages for op in st.ops), Entitlements.parse(options.allow)
    )
    state_dir = build_state_dir()  # this build's containers, stopped when a stage fails while others run
    with _build_env(options, dockerfile, graph, platform, state_dir=state_dir, events=steps) as env:
        for source in cache_from:
            import_cache_from(env, source, options.insecure_registries, events)
        results = _run_stages(env, graph, options, state_dir)
        if env.publisher is not None:
            env.publisher.wait()  # every layer blob in place before an image refers to it
        written = [_write_target(env, graph, results, i, options, events) for i in range(len(graph.targets))]
        if cache_to:
            stage_keys = stage_cache_keys(results, {results[str(t)].name for t in graph.targets})
            for destination in cache_to:
                export_cache_to(env, stage_keys, destination, options.insecure_registries, events)
    built = tuple(w.image for w in written)
    if options.iidfile is not None and built:
        options.iidfile.write_text(built[0].image_id)
    sizes = {r.name: sum(d.size for d in r.state.layers) for r in results.values()}
    summary = [line for w in written for line in w.summary]
    seconds = time.monotonic() - started
    if memo_key is not None and not env.downloaded:
        _remember(env, memo_key, steps.titles, written, sizes, summary)
    events(BuildFinished(tuple(b.image_id for b in built), seconds, tuple(summary)))
    return BuildResult(built, seconds, sizes)


# ---- read and plan ----------------------------------------------------------------------------------


@record
class _Dockerfile:
    """The Dockerfile of a build: the (resolved) context, where the file is, and its text."""

    context: Path
    path: Path  # CONTEXT/Dockerfile unless -f
    text: str
    shown_as: str  # how errors name it: as the user gave it (-f), "Dockerfile" for -f -


def _read_dockerfile(options: BuildOptions) -> _Dockerfile:
    """The context checked and the Dockerfile read (``dockerfile_text`` wins over the file)."""
    context = options.context.resolve()
    if not context.is_dir():
        raise ForkliftError(f"build context {options.context} is not a directory")
    path = options.dockerfile if options.dockerfile is not None else context / "Dockerfile"
    if options.dockerfile_text is not None:
        text = options.dockerfile_text
    else:
        try:
            text = path.read_text()
        except OSError as err:
            raise ForkliftError(f"cannot read Dockerfile {path}: {err.strerror}") from err
    # Errors name the file as the user gave it (-f), or CONTEXT/Dockerfile as given on the command line.
    shown_path = options.dockerfile if options.dockerfile is not None else options.context / "Dockerfile"
    shown_as = "Dockerfile" if options.dockerfile_text is not None else str(shown_path)
    return _Dockerfile(context=context, path=path, text=text, shown_as=shown_as)


def _plan(options: BuildOptions, dockerfile: _Dockerfile) -> tuple[StageGraph, Platform]:
    """The stage graph pruned to the targets, and the platform it is built for."""
    from forklift.dockerfile.instructions import parse_dockerfile
    from forklift.dockerfile.syntax import parse
    from forklift.oci.model import Platform
    from forklift.plan.graph import PlanOptions, plan_build

    instructions = parse_dockerfile(parse(dockerfile.text, file=dockerfile.shown_as))
    platform = Platform.parse(options.platform) if options.platform else Platform.host()
    plan_options = PlanOptions(
        targets=options.targets,
        build_args=dict(options.build_args),
        target_platform=platform,
        named_contexts=frozenset(n.lower() for n in options.build_contexts),
    )
    return plan_build(instructions, plan_options), platform


# ---- execute -----------------------------------------------------------------------------------------


class _StepTitles:
    """Passes events on and keeps the title of every step started (a memo replay reports them)."""

    def __init__(self, events: EventSink) -> None:
        self.events = events
        self.titles: list[str] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepStarted):
            self.titles.append(event.name)
        self.events(event)


@contextmanager
def _build_env(
    options: BuildOptions,
    dockerfile: _Dockerfile,
    graph: StageGraph,
    platform: Platform,
    *,
    state_dir: Path,
    events: EventSink,
) -> Iterator[BuildEnv]:
    """What the stages share: store, caches, context, the runtime (found on first use) and options.

    Its store lease and snapshot leases last as long as the ``with``: releasing the snapshot leases
    matters in long-lived processes (the Python API), as prune waits on them.
    """
    from forklift.execute.cache import BuildCache
    from forklift.execute.context import SourceTree, StatCache, read_dockerignore
    from forklift.execute.engine import BuildEnv, ExecOptions, RuntimeProvider
    from forklift.execute.runtime_setup import OverlayProbe, probed_runtime
    from forklift.execute.snapshots import SnapshotCache
    from forklift.oci.store import BlobPublisher, Store

    store = Store(options.root)
    ignore = read_dockerignore(dockerfile.context, dockerfile.path)
    stat_cache = StatCache.for_context(store.root, dockerfile.context)
    scope = hashlib.sha256(f"{dockerfile.context}\0{dockerfile.path.resolve()}".encode()).hexdigest()
    exec_options = ExecOptions(
        no_cache=options.no_cache,
        no_cache_stages=frozenset(s.lower() for s in options.no_cache_filter),
        network=options.network,
        secrets={s.id: s for s in options.secrets},
        ssh=dict(options.ssh),
        source_date_epoch=options.source_date_epoch,
        scope=scope,
        platform=platform,
        escape=graph.escape,
        runtime_name=options.runtime,
        pull=options.pull,
        insecure_registries=frozenset(options.insecure_registries),
        entitlements=Entitlements.parse(options.allow),
        cdi_spec_dirs=tuple(options.cdi_spec_dirs),
        named_contexts={n.lower(): NamedContext.parse(n, v) for n, v in options.build_contexts.items()},
    )
    snapshots = SnapshotCache(store.root)
    snapshots.clean_scratch()  # what builds killed mid-step left behind
    with store.lease() as lease, snapshots, BlobPublisher() as publisher:
        yield BuildEnv(
            store=store,
            cache=BuildCache(store.root),
            snapshots=snapshots,
            context=SourceTree(dockerfile.context, ignore=ignore, stat_cache=stat_cache),
            events=events,
            runtime=RuntimeProvider(lambda: probed_runtime(store.root, options.runtime, state_dir)),
            options=exec_options,
            lease=lease,
            overlay=OverlayProbe(snapshots.root, forced=options.overlay),
            # Target stages' layers become blobs anyway: write them in the pass that hashes them.
            eager_stages=frozenset(graph.targets),
            publisher=publisher,
        )


def _run_stages(
    env: BuildEnv, graph: StageGraph, options: BuildOptions, state_dir: Path
) -> dict[str, StageResult]:
    """Every stage the targets need, each once the stages it needs are done; results by stage index.

    When a stage fails while others run, the containers in this build's ``state_dir`` are killed.
    """
    import threading

    from forklift.execute.runtime_setup import kill_containers
    from forklift.execute.scheduler import StageTask, run_stages
    from forklift.execute.stage import run_stage

    stages = graph.built_stages
    tasks = [
        StageTask(str(st.index), tuple(sorted({str(e.dependency) for e in st.depends_on}))) for st in stages
    ]
    by_index = {st.index: st for st in stages}

    def run_one(task: StageTask, done: Mapping[str, StageResult], cancel: threading.Event) -> StageResult:
        planned = by_index[int(task.name)]
        names = {planned.display_name.lower(), str(planned.index)}
        return run_stage(
            env,
            planned,
            {int(k): v for k, v in done.items()},
            cancel,
            global_values=graph.global_scope.values,
            build_args=graph.build_args,
            no_cache=options.no_cache or bool(names & env.options.no_cache_stages),
        )

    def stop_containers() -> None:
        kill_containers(env.runtime.peek(), state_dir)

    try:
        return run_stages(tasks, run_one, jobs=options.jobs, on_cancel=stop_containers)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
        if env.context.stat_cache is not None:
            env.context.stat_cache.save()
        if env.recorded_layers:
            from forklift.oci.model import Digest

            # The cache keeps its layer blobs alive across prune (lazy layers have none yet).
            new = {Digest.parse(d) for d in env.recorded_layers}
            env.store.set_roots("cache", env.store.get_roots("cache") | {d for d in new if env.store.has(d)})


# ---- export ------------------------------------------------------------------------------------------


@record
class _WrittenTarget:
    """A target written: its image, the blobs it needs (the memo checks them) and its summary lines."""

    image: BuiltImage
    blobs: tuple[str, ...]
    summary: tuple[str, ...]


def _write_target(
    env: BuildEnv,
    graph: StageGraph,
    results: Mapping[str, StageResult],
    position: int,
    options: BuildOptions,
    events: EventSink,
) -> _WrittenTarget:
    """One target's image into the store, tagged, held to ``--max-size`` and handed to its outputs."""
    from forklift.execute.engine import materialize_layers
    from forklift.execute.export import (
        TaskProgress,
        export_image,
        final_state,
        outputs_for,
        tag_image,
        tags_for,
        write_image,
    )
    from forklift.report.buildrecord import summarize

    store, target, count = env.store, graph.targets[position], len(graph.targets)
    result = results[str(target)]
    state = final_state(result.state, options.labels)
    materialize_layers(env, state)
    image, image_id, digest = write_image(store, state, env.lease)
    tags = tags_for(options.tags, position, count)
    if options.max_size is not None:
        from forklift.report.size import enforce_max_size

        enforce_max_size(store, image, options.max_size, name=tags[0] if tags else result.name)
    tag_image(store, tags, digest)
    progress = TaskProgress(events, env.next_vertex)  # a push is a task of its own, not a step
    for out in outputs_for(options.outputs, position, count):
        export_image(store, image, state, out, tags, options.insecure_registries, progress)
    record = _write_build_record(env, graph, results, target, image_id=image_id, digest=digest)
    return _WrittenTarget(
        BuiltImage(result.name, image_id, digest, tags, store.root),
        blobs=(digest, image_id, *(str(d.digest) for d in state.layers)),
        summary=(
            f"image {result.name}: {image_id}" + (f" ({', '.join(tags)})" if tags else ""),
            summarize(record),
        ),
    )


def _write_build_record(
    env: BuildEnv,
    graph: StageGraph,
    results: Mapping[str, StageResult],
    target: int,
    *,
    image_id: str,
    digest: str,
) -> BuildRecord:
    """What each stage the target needed weighed (``forklift size`` reads it back)."""
    from forklift.report.buildrecord import make_build_record, write_build_record

    needed = graph.needed_by(target)
    record = make_build_record(
        env.store,
        image_digest=digest,
        image_id=image_id,
        final_index=target,
        built=[(i, results[str(i)].name, results[str(i)].state.layers) for i in sorted(needed)],
        skipped=[(st.index, st.display_name) for st in graph.stages if not st.built],
    )
    write_build_record(env.store.root, digest, record)
    return record


# ---- the memo: an unchanged build answered at once ---------------------------------------------------


def _memo_key(options: BuildOptions, dockerfile: _Dockerfile) -> str | None:
    """The memo key of this request, or None when it cannot be memoized (directory build contexts)."""
    from forklift.execute.cache.memo import request_key

    if any("://" not in v for v in options.build_contexts.values()):
        return None  # a named directory context is read outside the main context's read set
    request = {
        "forklift": __version__,
        "targets": list(options.targets),
        "tags": list(options.tags),
        "build_args": dict(options.build_args),
        "labels": dict(options.labels),
        "network": options.network,
        "epoch": options.source_date_epoch,
        "platform": options.platform,
        "contexts": dict(options.build_contexts),
        "secrets": sorted(s.id for s in options.secrets),
        "ssh": sorted(options.ssh),
        "allow": list(Entitlements.parse(options.allow).flags()),  # an unknown entitlement fails here
        "cdi": [str(d) for d in options.cdi_spec_dirs],
        "max_size": options.max_size,
    }
    return request_key(request, context=dockerfile.context, dockerfile=dockerfile.path, text=dockerfile.text)


def _remember(
    env: BuildEnv,
    key: str,
    titles: list[str],
    written: list[_WrittenTarget],
    sizes: Mapping[str, int],
    summary: list[str],
) -> None:
    """Record this build's result for ``key``, with what it read of the context."""
    from forklift.execute.cache import memo

    doc = {
        "titles": titles,
        "images": [[w.image.target, w.image.image_id, w.image.digest, list(w.image.tags)] for w in written],
        "sizes": sizes,
        "summary": summary,
        "blobs": [blob for w in written for blob in w.blobs],
    }
    memo.save(env.store.root, key, doc, env.context.reads)


def _replay(options: BuildOptions, doc: Mapping[str, Any], events: EventSink, started: float) -> BuildResult:
    """A build whose inputs are unchanged: report every step as cached, then do the outputs."""
    from forklift.execute.cache.memo import replay_steps

    steps = replay_steps(doc, events)
    built = tuple(
        BuiltImage(str(target), str(image_id), str(digest), tuple(tags), options.root)
        for target, image_id, digest, tags in doc["images"]
    )
    if options.outputs:
        from forklift.execute.export import TaskProgress, export_image, outputs_for, stored_state
        from forklift.oci.store import Store

        store = Store(options.root)
        progress = TaskProgress(events, itertools.count(steps + 1).__next__)
        for position, b in enumerate(built):
            img = b.image
            state = stored_state(img)
            for out in outputs_for(options.outputs, position, len(built)):
                export_image(store, img, state, out, b.tags, options.insecure_registries, progress)
    if options.iidfile is not None and built:
        options.iidfile.write_text(built[0].image_id)
    seconds = time.monotonic() - started
    events(BuildFinished(tuple(b.image_id for b in built), seconds, tuple(doc["summary"])))
    return BuildResult(built, seconds, dict(doc["sizes"]))
