"""The whole story on one screen: parse -> plan -> execute -> export.

``build(options)`` reads the Dockerfile, plans the stage graph (pruned to the targets), runs the
stages the targets need (independent ones at the same time) through the persistent cache, writes
each target's image into the store, and hands it to the outputs: store tags, an OCI layout or
archive, a docker-archive, a root filesystem directory or tarball. It emits progress events and
never prints.
"""

from __future__ import annotations

import hashlib
import itertools
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forklift import __version__
from forklift.errors import ForkliftError
from forklift.execute.options import NamedContext, SecretSource
from forklift.report.progress import (
    BuildFinished,
    Event,
    EventSink,
    StepCached,
    StepDone,
    StepStarted,
    discard,
)

# Everything else is imported where it is used: a build whose inputs did not change is answered
# from the memo (execute.memo) without loading the planner or the engine.
if TYPE_CHECKING:
    from forklift.dockerfile.ignore import DockerIgnore
    from forklift.execute.cache_transfer import CacheDestination, CacheSource
    from forklift.execute.engine import BuildEnv, StageResult
    from forklift.execute.state import StageState
    from forklift.oci.compression import Compression
    from forklift.oci.image import Image
    from forklift.oci.store import Lease, Store
    from forklift.runtime.base import Runtime

OUTPUT_TYPES = ("oci", "docker", "local", "tar", "image", "registry")
_COMPRESSIONS: Mapping[str, Compression] = {"gzip": "gzip", "zstd": "zstd", "uncompressed": "none"}


@dataclass(frozen=True, kw_only=True)
class OutputSpec:
    """One ``--output``: ``type`` (oci, docker, local, tar, image, registry) and its attributes.

    ``type=registry,name=REF`` (and ``type=image,name=REF,push=true``, and ``--push``) stores the
    image under each name and pushes it there; without ``name`` the ``-t`` tags are pushed. A push
    takes buildx's ``compression=gzip|zstd|uncompressed``, ``oci-mediatypes=true|false`` and
    ``registry.insecure=true`` (plain HTTP to that registry).
    """

    type: str
    dest: Path | None = None
    tar: bool = True  # oci: a tar file (False: a layout directory)
    name: str | None = None
    compression: Compression = "gzip"  # registry: for the layers the store keeps uncompressed
    oci_mediatypes: bool | None = None  # registry: True OCI, False Docker, None as stored
    insecure: bool = False  # registry: plain HTTP to the registries of ``name``

    @staticmethod
    def parse(text: str) -> OutputSpec:
        """``type=oci,dest=out.tar[,tar=false]``; a bare path means ``type=local,dest=PATH``."""
        if "=" not in text:
            return OutputSpec(type="local", dest=Path(text))
        fields: dict[str, str] = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            if not sep:
                raise ForkliftError(f"invalid --output {text!r}: {part!r} is not key=value")
            fields[key.strip().lower()] = value.strip()
        kind = fields.pop("type", "local")
        push = fields.pop("push", "false").lower() in ("true", "1", "yes")
        if kind == "image" and push:
            kind = "registry"
        if kind not in OUTPUT_TYPES:
            raise ForkliftError(f"invalid --output type {kind!r}", hint="one of " + ", ".join(OUTPUT_TYPES))
        dest = fields.pop("dest", None)
        if kind not in ("image", "registry") and not dest:
            raise ForkliftError(f"--output type={kind} needs dest=PATH")
        if dest == "-":
            raise ForkliftError("--output dest=- (standard output) is not supported")
        tar = fields.pop("tar", "true").lower() not in ("false", "0", "no")
        name = fields.pop("name", None)
        compression_name = fields.pop("compression", "gzip").lower()
        compression = _COMPRESSIONS.get(compression_name)
        if compression is None:
            raise ForkliftError(
                f"invalid --output compression={compression_name!r} (gzip, zstd or uncompressed)"
            )
        oci = fields.pop("oci-mediatypes", None)
        insecure = fields.pop("registry.insecure", "false")
        return OutputSpec(
            type=kind,
            dest=Path(dest) if dest else None,
            tar=tar,
            name=name,
            compression=compression,
            oci_mediatypes=None if oci is None else _flag(oci, "oci-mediatypes"),
            insecure=_flag(insecure, "registry.insecure"),
        )


def _flag(value: str, key: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes", ""):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ForkliftError(f"invalid --output {key}={value!r} (true or false)")


@dataclass(frozen=True, kw_only=True)
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
    # ``type=local,dest=DIR`` / ``type=local,src=DIR``) or parsed execute.cache_transfer values.
    cache_to: tuple[str | CacheDestination, ...] = ()
    cache_from: tuple[str | CacheSource, ...] = ()
    pull: bool = False  # --pull: check the registry for every FROM image, even one the store has
    insecure_registries: frozenset[str] = frozenset()  # --insecure-registry: plain HTTP to these hosts


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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
    from forklift.execute import memo

    started = time.monotonic()
    cache_to, cache_from = _cache_specs(options)  # bad specs fail before any work
    context = options.context.resolve()
    if not context.is_dir():
        raise ForkliftError(f"build context {options.context} is not a directory")
    dockerfile_path = options.dockerfile if options.dockerfile is not None else context / "Dockerfile"
    if options.dockerfile_text is not None:
        text = options.dockerfile_text
    else:
        try:
            text = dockerfile_path.read_text()
        except OSError as err:
            raise ForkliftError(f"cannot read Dockerfile {dockerfile_path}: {err.strerror}") from err
    memo_key = _memo_key(options, context, dockerfile_path, text)
    # A build answered from the memo records no cache keys (nothing to export), and --pull must ask
    # the registry: both run the stages (every step still a cache hit when nothing changed).
    use_memo = not (options.no_cache or options.no_cache_filter or cache_to or options.pull)
    if memo_key is not None and use_memo:
        remembered = memo.load_valid(options.root, memo_key, context)
        if remembered is not None:
            return _replay(options, remembered, events, started)
    titles: list[str] = []

    def recording(event: Event) -> None:
        if isinstance(event, StepStarted):
            titles.append(event.name)
        events(event)

    from forklift.dockerfile.instructions import parse_dockerfile
    from forklift.dockerfile.syntax import parse
    from forklift.execute.cache import BuildCache
    from forklift.execute.context import SourceTree, StatCache
    from forklift.execute.engine import (
        BuildEnv,
        ExecOptions,
        RuntimeProvider,
        materialize_layers,
    )
    from forklift.execute.scheduler import StageTask, run_stages
    from forklift.execute.snapshots import SnapshotCache
    from forklift.execute.stage import run_stage
    from forklift.oci.model import Digest, Platform
    from forklift.oci.store import Store
    from forklift.plan.graph import PlanOptions, plan_build

    # Errors name the file as the user gave it (-f), or CONTEXT/Dockerfile as given on the command line.
    shown_path = options.dockerfile if options.dockerfile is not None else options.context / "Dockerfile"
    parsed = parse(text, file="Dockerfile" if options.dockerfile_text is not None else str(shown_path))
    dockerfile = parse_dockerfile(parsed)
    platform = Platform.parse(options.platform) if options.platform else Platform.host()
    graph = plan_build(
        dockerfile,
        PlanOptions(
            targets=options.targets,
            build_args=dict(options.build_args),
            target_platform=platform,
            named_contexts=frozenset(n.lower() for n in options.build_contexts),
        ),
    )

    store = Store(options.root)
    ignore = _read_dockerignore(context, dockerfile_path)
    stat_cache = StatCache.for_context(store.root, context)
    scope = hashlib.sha256(f"{context}\0{dockerfile_path.resolve()}".encode()).hexdigest()
    no_cache_stages = frozenset(s.lower() for s in options.no_cache_filter)
    exec_options = ExecOptions(
        no_cache=options.no_cache,
        no_cache_stages=no_cache_stages,
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
        named_contexts={n.lower(): NamedContext.parse(n, v) for n, v in options.build_contexts.items()},
    )
    snapshots = SnapshotCache(store.root)
    snapshots.clean_scratch()  # what builds killed mid-step left behind

    # Each build has its own runtime state dir, so stopping this build's containers (when a stage
    # fails while others run) never touches another build's. Short: runc keeps sockets there.
    state_dir = Path("/run/forklift/builds") / uuid.uuid4().hex[:12]

    def find_runtime() -> Runtime:
        return _probed_runtime(store.root, options.runtime, state_dir)

    overlay_ok: list[bool] = []
    overlay_lock = threading.Lock()

    def overlay() -> bool:
        if options.overlay is not None:
            return options.overlay
        with overlay_lock:
            if not overlay_ok:
                from forklift.snapshot.overlay import overlay_supported

                overlay_ok.append(overlay_supported(snapshots.root))
            return overlay_ok[0]

    # Releasing the snapshot leases matters in long-lived processes (the Python API): prune waits on them.
    with store.lease() as lease, snapshots:
        env = BuildEnv(
            store=store,
            cache=BuildCache(store.root),
            snapshots=snapshots,
            context=SourceTree(context, ignore=ignore, stat_cache=stat_cache),
            events=recording,
            runtime=RuntimeProvider(find_runtime),
            options=exec_options,
            lease=lease,
            overlay=overlay,
        )
        stages = graph.built_stages
        tasks = [
            StageTask(str(st.index), tuple(sorted({str(e.dependency) for e in st.depends_on})))
            for st in stages
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
                no_cache=options.no_cache or bool(names & no_cache_stages),
            )

        def stop_containers() -> None:
            _kill_containers(env.runtime.peek(), state_dir)

        for source in cache_from:
            _import_cache(env, source, options.insecure_registries, events)
        try:
            results = run_stages(tasks, run_one, jobs=options.jobs, on_cancel=stop_containers)
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)
            stat_cache.save()
            if env.recorded_layers:
                # The cache keeps its layer blobs alive across prune (lazy layers have none yet).
                new = {Digest.parse(d) for d in env.recorded_layers}
                store.set_roots("cache", store.get_roots("cache") | {d for d in new if store.has(d)})

        from forklift.report.size import enforce_max_size, make_build_record, summarize, write_build_record

        built: list[BuiltImage] = []
        blobs: list[str] = []
        summary: list[str] = []
        targets = graph.targets
        for position, target in enumerate(targets):
            result = results[str(target)]
            state = _final_state(result.state, options.labels)
            materialize_layers(env, state)
            image, image_id, digest = _write_image(store, state, lease)
            tags = _tags_for(options.tags, position, len(targets))
            if options.max_size is not None:
                enforce_max_size(store, image, options.max_size, name=tags[0] if tags else result.name)
            for tag in tags:
                if store.get_ref(_canonical(tag)) != Digest.parse(digest):
                    store.set_ref(_canonical(tag), Digest.parse(digest))
            outputs = _outputs_for(options.outputs, position, len(targets))
            progress = _Progress(events, env.next_vertex)
            for out in outputs:
                _export(store, image, state, out, tags, options.insecure_registries, progress)
            built.append(BuiltImage(result.name, image_id, digest, tags, store.root))
            blobs.extend([digest, image_id, *(str(d.digest) for d in state.layers)])
            # What each stage the target needed weighed (``forklift size`` reads it back).
            needed = _ancestors(graph, target)
            record = make_build_record(
                store,
                image_digest=digest,
                image_id=image_id,
                final_index=target,
                built=[(i, results[str(i)].name, results[str(i)].state.layers) for i in sorted(needed)],
                skipped=[(st.index, st.display_name) for st in graph.stages if not st.built],
            )
            write_build_record(store.root, digest, record)
            summary.append(f"image {result.name}: {image_id}" + (f" ({', '.join(tags)})" if tags else ""))
            summary.append(summarize(record))
        if cache_to:
            stage_keys = _stage_keys(results, {results[str(t)].name for t in targets})
            for destination in cache_to:
                _export_cache(env, stage_keys, destination, options.insecure_registries, events)
    if options.iidfile is not None and built:
        options.iidfile.write_text(built[0].image_id)
    sizes = {r.name: sum(d.size for d in r.state.layers) for r in results.values()}
    seconds = time.monotonic() - started
    if memo_key is not None and not env.downloaded:
        memo.save(
            store.root,
            memo_key,
            {
                "titles": titles,
                "images": [[b.target, b.image_id, b.digest, list(b.tags)] for b in built],
                "sizes": sizes,
                "summary": summary,
                "blobs": blobs,
            },
            env.context.reads,
        )
    events(BuildFinished(tuple(b.image_id for b in built), seconds, tuple(summary)))
    return BuildResult(tuple(built), seconds, sizes)


# ---- the build cache between machines (--cache-from, --cache-to) ------------------------------------


def _cache_specs(options: BuildOptions) -> tuple[list[CacheDestination], list[CacheSource]]:
    """``cache_to`` and ``cache_from`` parsed (ForkliftError for a bad spec); none: nothing imported."""
    if not options.cache_to and not options.cache_from:
        return [], []
    from forklift.execute.cache_transfer import parse_cache_from, parse_cache_to

    to = [parse_cache_to(d) if isinstance(d, str) else d for d in options.cache_to]
    sources = [parse_cache_from(s) if isinstance(s, str) else s for s in options.cache_from]
    return to, sources


def _stage_keys(results: Mapping[str, StageResult], finals: set[str]) -> list[Any]:
    """What ``export_cache`` takes: each built stage's step keys (stage order), the targets final."""
    from forklift.execute.cache_transfer import StageCacheKeys

    ordered = sorted(results.values(), key=lambda r: r.index)
    return [StageCacheKeys(r.name, r.keys, final=r.name in finals) for r in ordered]


def _task_events(env: BuildEnv, events: EventSink, title: str) -> tuple[int, float]:
    """Start a progress vertex for an internal task (not a step: the memo does not replay it)."""
    vertex = env.next_vertex()
    events(StepStarted(vertex, title))
    return vertex, time.monotonic()


def _import_cache(env: BuildEnv, source: CacheSource, insecure: frozenset[str], events: EventSink) -> None:
    """``--cache-from``: the export's entries into the local cache (a missing cache is a warning)."""
    from forklift.execute.cache_transfer import import_cache
    from forklift.oci.registry.client import RegistryOptions
    from forklift.report.progress import StepFailed, StepLog

    where = str(source.ref) if source.type == "registry" else f"{source.src}"
    vertex, started = _task_events(env, events, f"importing cache from {where}")
    try:
        registry = RegistryOptions(insecure_registries=insecure)
        result = import_cache(env.store, source, registry_options=registry)
    except (ForkliftError, OSError) as err:
        message = err.message if isinstance(err, ForkliftError) else str(err)
        events(StepFailed(vertex, time.monotonic() - started, message))
        hint = err.hint if isinstance(err, ForkliftError) else None
        raise ForkliftError(f"--cache-from {where}: {message}", hint=hint) from None
    if not result.found:
        events(StepLog(vertex, f"WARNING: no cache at {result.location}: building without it\n"))
    else:
        events(
            StepLog(
                vertex,
                f"{result.entries} entries imported, {result.kept} already here, "
                f"{result.layers_fetched} blobs fetched\n",
            )
        )
    events(StepDone(vertex, time.monotonic() - started))


def _export_cache(
    env: BuildEnv,
    stage_keys: list[Any],
    destination: CacheDestination,
    insecure: frozenset[str],
    events: EventSink,
) -> None:
    """``--cache-to``: export the steps this build used; with ``ignore-error=true`` a failure warns."""
    from forklift.execute.cache_transfer import export_cache
    from forklift.oci.registry.client import RegistryOptions
    from forklift.report.progress import StepFailed, StepLog

    where = str(destination.ref) if destination.type == "registry" else str(destination.dest)
    vertex, started = _task_events(env, events, f"exporting cache to {where} (mode={destination.mode})")
    try:
        result = export_cache(
            env.store, stage_keys, destination, registry_options=RegistryOptions(insecure_registries=insecure)
        )
    except (ForkliftError, OSError) as err:
        message = err.message if isinstance(err, ForkliftError) else str(err)
        if not destination.ignore_error:
            events(StepFailed(vertex, time.monotonic() - started, message))
            hint = err.hint if isinstance(err, ForkliftError) else None
            raise ForkliftError(
                f"--cache-to {where}: {message}", hint=hint or "add ignore-error=true to only warn"
            ) from None
        events(StepLog(vertex, f"WARNING: cache export to {where} failed: {message}\n"))
        events(StepDone(vertex, time.monotonic() - started))
        return
    if result.written:
        text = f"{result.entries} entries, {result.layers} layers -> {result.location} ({result.digest})\n"
    else:
        text = "WARNING: no cache entries to export\n"
    events(StepLog(vertex, text))
    events(StepDone(vertex, time.monotonic() - started))


def _memo_key(options: BuildOptions, context: Path, dockerfile: Path, text: str) -> str | None:
    """The memo key of this request, or None when it cannot be memoized (directory build contexts)."""
    from forklift.execute.memo import memo_key

    if any("://" not in v for v in options.build_contexts.values()):
        return None  # a named directory context is read outside the main context's read set
    ignores: list[str | None] = []
    for candidate in (dockerfile.with_name(dockerfile.name + ".dockerignore"), context / ".dockerignore"):
        try:
            ignores.append(candidate.read_text())
        except OSError:
            ignores.append(None)
    return memo_key(
        {
            "forklift": __version__,
            "context": str(context),
            "dockerfile": str(dockerfile.resolve()),
            "text": text,
            "ignores": ignores,
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
            "max_size": options.max_size,
        }
    )


def _replay(options: BuildOptions, doc: Mapping[str, Any], events: EventSink, started: float) -> BuildResult:
    """A build whose inputs are unchanged: report every step as cached, then do the outputs."""
    for vertex, title in enumerate(doc["titles"], start=1):
        events(StepStarted(vertex, title))
        events(StepCached(vertex))
        events(StepDone(vertex, 0.0, cached=True))
    built = tuple(
        BuiltImage(str(target), str(image_id), str(digest), tuple(tags), options.root)
        for target, image_id, digest, tags in doc["images"]
    )
    if options.outputs:
        from forklift.execute.state import StageState
        from forklift.oci.image import image_config, image_manifest
        from forklift.oci.store import Store

        store = Store(options.root)
        progress = _Progress(events, itertools.count(len(doc["titles"]) + 1).__next__)
        for position, b in enumerate(built):
            img = b.image
            state = StageState(config=image_config(img), layers=image_manifest(img).layers)
            for out in _outputs_for(options.outputs, position, len(built)):
                _export(store, img, state, out, b.tags, options.insecure_registries, progress)
    if options.iidfile is not None and built:
        options.iidfile.write_text(built[0].image_id)
    seconds = time.monotonic() - started
    events(BuildFinished(tuple(b.image_id for b in built), seconds, tuple(doc["summary"])))
    return BuildResult(built, seconds, dict(doc["sizes"]))


def _probed_runtime(root: Path, name: str | None, state_dir: Path) -> Runtime:
    """The OCI runtime: probed once (a trial container) and remembered in ``<store>/runtime.json``
    while the binary stays the same file, so a build does not pay the probe every time."""
    from forklift.runtime.oci import remembered_runtime

    (root / "bundles").mkdir(parents=True, exist_ok=True)
    return remembered_runtime(root / "runtime.json", name, state_dir=state_dir, bundle_dir=root / "bundles")


def _kill_containers(runtime: Runtime | None, state_dir: Path) -> None:
    """SIGKILL every container still running in this build's runtime state dir."""
    import subprocess

    binary = getattr(runtime, "binary", None)
    if binary is None or not state_dir.is_dir():
        return
    for entry in state_dir.iterdir():
        subprocess.run(
            [str(binary), "--root", str(state_dir), "kill", entry.name, "KILL"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )


def _ancestors(graph: Any, target: int) -> set[int]:
    """``target`` and every stage it needs (FROM, COPY --from, RUN --mount from=), transitively."""
    seen: set[int] = set()
    todo = [target]
    while todo:
        index = todo.pop()
        if index in seen:
            continue
        seen.add(index)
        todo.extend(edge.dependency for edge in graph.stages[index].depends_on)
    return seen


def _read_dockerignore(context: Path, dockerfile: Path) -> DockerIgnore | None:
    from forklift.dockerfile.ignore import parse_dockerignore

    # BuildKit: <Dockerfile>.dockerignore next to the Dockerfile wins over the context's.
    for candidate in (dockerfile.with_name(dockerfile.name + ".dockerignore"), context / ".dockerignore"):
        try:
            text = candidate.read_text()
        except OSError:
            continue
        return parse_dockerignore(text, file=str(candidate))
    return None


def _canonical(tag: str) -> str:
    from forklift.oci.registry.reference import parse_reference

    return str(parse_reference(tag))


def _tags_for(tags: tuple[str, ...], position: int, count: int) -> tuple[str, ...]:
    """With one target every tag names it; with several, ``-t`` pairs with the targets in order."""
    if count == 1:
        return tags
    return (tags[position],) if position < len(tags) else ()


def _outputs_for(outputs: tuple[OutputSpec, ...], position: int, count: int) -> tuple[OutputSpec, ...]:
    if count == 1:
        return outputs
    return (outputs[position],) if position < len(outputs) else ()


def _final_state(state: StageState, labels: Mapping[str, str]) -> StageState:
    """The target's config: ``--label`` values merged; ``created`` = the last history entry's time."""
    config = state.config
    if labels:
        merged = dict(config.config.labels)
        merged.update(labels)
        config = replace(config, config=replace(config.config, labels=merged))
    created = next((h.created for h in reversed(config.history) if h.created), None) or state.base_created
    config = replace(config, created=created)
    return replace(state, config=config)


def _write_image(store: Store, state: StageState, lease: Lease | None) -> tuple[Image, str, str]:
    """Config and manifest into the store; returns (image, image ID, manifest digest).

    A fully cached rebuild makes the same bytes: they are already stored and not written again.
    """
    from forklift.oci.image import StoreImage
    from forklift.oci.model import Descriptor, Digest, Manifest, MediaType

    def put(data: bytes) -> Digest:
        digest = Digest.of(data)
        if store.has(digest):
            if lease is not None:
                lease.add(digest)
            return digest
        return store.put_bytes(data, lease=lease)

    raw_config = state.config.to_bytes()
    config_digest = put(raw_config)
    manifest = Manifest(
        config=Descriptor(media_type=MediaType.OCI_CONFIG, digest=config_digest, size=len(raw_config)),
        layers=state.layers,
    )
    digest = put(manifest.to_bytes())
    return StoreImage(store, digest), str(config_digest), str(digest)


def _export(
    store: Store,
    image: Image,
    state: StageState,
    out: OutputSpec,
    tags: tuple[str, ...],
    insecure_registries: frozenset[str] = frozenset(),
    progress: _Progress | None = None,
) -> None:
    """Write one output of a target (a push is reported as a task of its own)."""
    from forklift.oci.model import Digest

    if out.type == "registry":
        from forklift.errors import RegistryError
        from forklift.oci.registry.client import RegistryOptions
        from forklift.oci.registry.transfer import MediaFamily, push_image

        targets = out.name.split(",") if out.name else list(tags)
        if not targets:
            raise ForkliftError("--output type=registry needs name=NAME[:TAG] (or -t)")
        digest = Digest.parse(_image_digest(image))
        media_types: MediaFamily | None = None
        if out.oci_mediatypes is not None:
            media_types = "oci" if out.oci_mediatypes else "docker"
        for target in targets:
            canonical = _canonical(target)
            if store.get_ref(canonical) != digest:
                store.set_ref(canonical, digest)
            insecure = set(insecure_registries)
            if out.insecure:
                insecure.add(canonical.split("/", 1)[0])
            with progress.task(f"pushing {canonical}") if progress is not None else nullcontext():
                try:
                    push_image(
                        store,
                        canonical,
                        media_types=media_types,
                        compression=out.compression,
                        options=RegistryOptions(insecure_registries=frozenset(insecure)),
                    )
                except (RegistryError, OSError) as err:
                    raise ForkliftError(f"pushing {target}: {err}") from err
        return

    assert out.dest is not None or out.type == "image"
    if out.type == "image":
        if out.name:
            for image_name in out.name.split(","):
                store.set_ref(_canonical(image_name), Digest.parse(_image_digest(image)))
        return
    dest = out.dest
    assert dest is not None
    name = tags[0] if tags else None
    if out.type == "oci":
        from forklift.oci.layout import write_layout

        dest.parent.mkdir(parents=True, exist_ok=True)
        write_layout(dest, [(_canonical(name) if name else None, image)], as_tar=out.tar)
    elif out.type == "docker":
        from forklift.oci.archive import write_archive

        dest.parent.mkdir(parents=True, exist_ok=True)
        write_archive(dest, [(tuple(tags), image)])
    elif out.type == "local":
        _write_rootfs(store, state, dest)
    elif out.type == "tar":
        from forklift.snapshot.diff import DirectorySource, write_layer

        (store.root / "exports").mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="forklift-rootfs-", dir=store.root / "exports") as tmp:
            root = Path(tmp) / "rootfs"
            _write_rootfs(store, state, root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "wb") as f:
                write_layer(DirectorySource(root), f)


class _Progress:
    """Reports an internal task (a push) as a progress vertex of its own: started, done or failed."""

    def __init__(self, events: EventSink, next_vertex: Callable[[], int]) -> None:
        self.events = events
        self.next_vertex = next_vertex

    @contextmanager
    def task(self, title: str) -> Iterator[None]:
        from forklift.report.progress import StepFailed

        vertex = self.next_vertex()
        started = time.monotonic()
        self.events(StepStarted(vertex, title))
        try:
            yield
        except ForkliftError as err:
            self.events(StepFailed(vertex, time.monotonic() - started, err.render()))
            raise
        self.events(StepDone(vertex, time.monotonic() - started))


def _image_digest(image: Image) -> str:
    from forklift.oci.image import image_digest

    return str(image_digest(image))


def _write_rootfs(store: Store, state: StageState, dest: Path) -> None:
    """``type=local``: the final root filesystem, layer by layer (whiteouts applied)."""
    from forklift.oci.compression import open_uncompressed
    from forklift.snapshot.unpack import ApplyOptions, apply_layer

    dest.mkdir(parents=True, exist_ok=True)
    for layer in state.layers:
        with store.open_blob(layer.digest, size=layer.size) as blob, open_uncompressed(blob) as tar:
            apply_layer(tar, dest, options=ApplyOptions(mode="merge"))
