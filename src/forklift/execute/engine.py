"""Running one stage: its ops in order, each through the cache, with progress events.

``BuildEnv`` is what every stage of one build shares (store, cache, snapshots, context, runtime,
event sink, options); ``run_stage`` walks one planned stage's ops and returns its ``StageResult``.
Every step goes through ``Stepper.step``: compute the inputs, look the key up, reuse the recorded
layer and history time on a hit, else run the op, store the layer and record the result, and say
why it missed.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from forklift.errors import BuildError, ForkliftError
from forklift.execute.cache import BuildCache, CacheRecord, LayerRef, StepInputs, StepPosition, explain_miss
from forklift.execute.context import SourceTree
from forklift.execute.options import Entitlements, NamedContext, SecretSource
from forklift.execute.snapshots import SnapshotCache
from forklift.execute.state import StageState
from forklift.oci.model import Descriptor, Digest, HistoryEntry, MediaType, Platform
from forklift.oci.store import BlobPublisher, Lease, Store
from forklift.records import record
from forklift.report.progress import EventSink, StepCached, StepDone, StepFailed, StepMissed, StepStarted
from forklift.runtime.base import Runtime
from forklift.snapshot.diff import LayerOptions, LayerSource, write_layer

HISTORY_COMMENT = "buildkit.dockerfile.v0"


@record(kw_only=True)
class ExecOptions:
    """Per-build execution options (flags of ``forklift build``)."""

    no_cache: bool = False
    no_cache_stages: frozenset[str] = frozenset()  # --no-cache-filter (stage names, lower-case)
    network: str = "default"  # default network for RUN: default | host | none
    secrets: Mapping[str, SecretSource] = field(default_factory=dict)
    ssh: Mapping[str, str] = field(default_factory=dict)  # id -> agent socket path
    source_date_epoch: int | None = None
    scope: str = ""  # identifies context + Dockerfile across builds (for miss explanations)
    platform: Platform = field(default_factory=Platform.host)
    escape: str = "\\"
    runtime_name: str | None = None
    named_contexts: Mapping[str, NamedContext] = field(default_factory=dict)
    pull: bool = False  # --pull: check the registry for every FROM image once per build
    insecure_registries: frozenset[str] = frozenset()  # --insecure-registry: plain HTTP to these hosts
    entitlements: Entitlements = field(default_factory=Entitlements)  # --allow
    cdi_spec_dirs: tuple[Path, ...] = ()  # --cdi-spec-dir; empty: /etc/cdi and /var/run/cdi


class RuntimeProvider:
    """Finds the OCI runtime once, on first use (a fully cached build never probes it)."""

    def __init__(self, find: Callable[[], Runtime]) -> None:
        self._find = find
        self._lock = threading.Lock()
        self._runtime: Runtime | None = None

    def peek(self) -> Runtime | None:
        """The runtime if it was found already, else None (never probes)."""
        return self._runtime

    def get(self) -> Runtime:
        """The runtime (probed on first call)."""
        with self._lock:
            if self._runtime is None:
                self._runtime = self._find()
            return self._runtime


@dataclass(kw_only=True)
class BuildEnv:
    """What the stages of one build share. Thread-safe where stages touch it concurrently."""

    store: Store
    cache: BuildCache
    snapshots: SnapshotCache
    context: SourceTree
    events: EventSink
    runtime: RuntimeProvider
    options: ExecOptions
    lease: Lease | None = None
    overlay: Callable[[], bool] = lambda: True  # whether overlayfs works here (probed lazily)
    _vertices: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _vertex_lock: threading.Lock = field(default_factory=threading.Lock)
    wrote_cache: bool = False
    recorded_layers: set[str] = field(default_factory=set)  # layer digests of records this build wrote
    downloaded: bool = False  # an ADD <url> ran: remote content, so the build is not memoized
    pull_lock: threading.Lock = field(default_factory=threading.Lock)
    pulled: set[str] = field(default_factory=set)  # references --pull checked already (under pull_lock)
    # The indexes of the target stages. Their layers go into the image, so each step writes its
    # blob at once, in the one tar pass that hashes it; other stages' layers stay lazy (hashed
    # only, written by materialize_layers if an image ever needs them). Empty: every layer is lazy.
    eager_stages: frozenset[int] = frozenset()
    # Finishes eager layer blobs (fsync, move into place) off the step's thread; the build waits
    # for it before writing images. None: each commit finishes in place.
    publisher: BlobPublisher | None = None

    def next_vertex(self) -> int:
        """A fresh progress vertex number (BuildKit's ``#N``)."""
        with self._vertex_lock:
            return next(self._vertices)

    def epoch_inputs(self) -> tuple[tuple[str, str], ...]:
        """SOURCE_DATE_EPOCH as a cache-key input of a step that makes a layer (none when unset)."""
        epoch = self.options.source_date_epoch
        return (("source_date_epoch", str(epoch)),) if epoch is not None else ()

    def now(self) -> str:
        """The history timestamp for a new step: now, or SOURCE_DATE_EPOCH when set."""
        epoch = self.options.source_date_epoch
        if epoch is not None:
            return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@record
class StageResult:
    """A finished stage: its final state (an image value), whether any step ran, and the cache key
    of each of its steps in order (what ``--cache-to`` exports)."""

    name: str
    index: int
    state: StageState
    ran: bool = False
    keys: tuple[str, ...] = ()


# ---- layers and snapshots ----------------------------------------------------------------------


class _DigestOnly:
    """A write sink that keeps nothing (write_layer hashes what passes through)."""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return len(data)

    def flush(self) -> None:
        pass


def store_layer(
    env: BuildEnv, source: LayerSource, options: LayerOptions | None = None, *, lazy: bool = False
) -> LayerRef | None:
    """Write ``source`` as an uncompressed layer blob; None when it holds no entries (no layer).

    Layers stay uncompressed in the store (cheap to make and to hash); exporters compress. With
    ``lazy`` only the digests are computed: the step's snapshot is the layer's content, and the
    blob is written from it (byte-identical, the writer is deterministic) when an image that
    contains the layer is written (``materialize_layers``); a builder stage's layers never are.
    """
    opts = options or LayerOptions()
    opts = replace(opts, compression="none", clamp_mtime=env.options.source_date_epoch)
    if lazy:
        digests = write_layer(source, _DigestOnly(), opts)
        if digests.entries == 0:
            return None
        return LayerRef(digests.digest, digests.diff_id, digests.size, MediaType.OCI_LAYER)
    with env.store.writer() as writer:
        digests = write_layer(source, writer, opts)
        if digests.entries == 0:
            return None
        digest, size = writer.commit(Digest.parse(digests.digest), lease=env.lease, publisher=env.publisher)
    return LayerRef(str(digest), digests.diff_id, size, MediaType.OCI_LAYER)


def materialize_layers(env: BuildEnv, state: StageState) -> None:
    """Write the blob of every lazy layer of ``state`` from its snapshot (before the image is stored)."""
    from forklift.snapshot.diff import DirectorySource, OverlayUpperSource

    for desc, diff_id in zip(state.layers, state.config.diff_ids):
        if env.store.has(desc.digest):
            if env.lease is not None:
                env.lease.add(desc.digest)
            continue
        kind = state.lazy.get(str(desc.digest))
        snapshot = env.snapshots.path(str(diff_id))
        if kind is None or not snapshot.is_dir():
            raise BuildError(
                f"layer {desc.digest} has neither a blob nor a snapshot", hint="build with --no-cache"
            )
        source: LayerSource = OverlayUpperSource(snapshot) if kind == "upper" else DirectorySource(snapshot)
        opts = LayerOptions(compression="none", clamp_mtime=env.options.source_date_epoch)
        with env.store.writer() as writer:
            write_layer(source, writer, opts)
            writer.commit(desc.digest, size=desc.size, lease=env.lease)


def layer_descriptor(layer: LayerRef) -> Descriptor:
    """The manifest descriptor of a stored layer."""
    return Descriptor(media_type=layer.media_type, digest=Digest.parse(layer.digest), size=layer.size)


def ensure_snapshot(env: BuildEnv, layer: Descriptor, diff_id: str) -> Path:
    """The unpacked snapshot of one layer (unpacked from its blob on first use)."""

    def fill(target: Path) -> None:
        from forklift.snapshot.unpack import unpack_layer_for_overlay

        with env.store.open_blob(layer.digest, size=layer.size) as blob:
            unpack_layer_for_overlay(blob, target)

    return env.snapshots.ensure(diff_id, fill)


def lower_dirs(env: BuildEnv, state: StageState) -> list[Path]:
    """The snapshots of a state's layers, top-most first (overlayfs' lowerdir order)."""
    dirs = [ensure_snapshot(env, desc, str(d)) for desc, d in zip(state.layers, state.config.diff_ids)]
    return list(reversed(dirs))


@contextlib.contextmanager
def image_view(env: BuildEnv, state: StageState) -> Iterator[Path]:
    """A directory showing the state's filesystem, for reading only (COPY --from, bind mounts, names).

    One layer is its snapshot itself; several are merged by an overlay whose upper is discarded.
    """
    lowers = lower_dirs(env, state)
    if len(lowers) == 1:
        yield lowers[0]
        return
    from forklift.snapshot.overlay import writable_rootfs

    scratch = env.snapshots.scratch_dir("view")
    try:
        for sub in ("upper", "work", "merged"):
            (scratch / sub).mkdir()
        # volatile: its upper is thrown away, so the unmount need not sync the filesystem (which
        # would write back every snapshot the build has made so far).
        with writable_rootfs(
            lowers,
            scratch / "upper",
            scratch / "work",
            scratch / "merged",
            use_overlay=env.overlay(),
            volatile=True,
        ) as root:
            yield root
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---- the cached step ---------------------------------------------------------------------------


@record
class Outcome:
    """What running a step produced: a layer (or none) and an optional snapshot dir to adopt."""

    layer: LayerRef | None
    snapshot_dir: Path | None = None
    source_kind: str = ""  # a lazy layer: "upper" (RUN) or "dir" (COPY, WORKDIR); its snapshot is the content


class Stepper:
    """Runs the steps of one stage through the cache, and reports them."""

    def __init__(
        self,
        env: BuildEnv,
        stage_name: str,
        total: int,
        *,
        no_cache: bool,
        cancel: threading.Event | None = None,
        eager_layers: bool = False,
    ) -> None:
        self.env = env
        self.cancel = cancel
        self.eager_layers = eager_layers  # a target stage: store_layer(lazy=False) (see BuildEnv)
        self.stage_name = stage_name
        self.total = total
        self.no_cache = no_cache
        self.last_miss: str | None = None  # the text of the last step that ran, for explanations
        self.ran = False
        # While a step runs: the inputs and snapshot of the last build's step at the same position
        # (a COPY re-links the files that did not change from it instead of copying them again).
        self.previous_inputs: StepInputs | None = None
        self.previous_snapshot: Path | None = None
        self.keys: list[str] = []  # the cache key of every step, hit or miss, in order

    def title(self, index: int, text: str) -> str:
        """``[builder 2/5] RUN make`` as BuildKit shows a step."""
        return f"[{self.stage_name} {index + 1}/{self.total}] {text}"

    def step(
        self,
        state: StageState,
        *,
        index: int,
        text: str,
        history: str,
        inputs: StepInputs,
        run: Callable[[int], Outcome] | None,
        after: Callable[[StageState], StageState] | None = None,
        location: str = "",
        visible: bool = True,
    ) -> StageState:
        """One step: ``run(vertex)`` on a miss (None: a metadata-only step), then ``after`` on the state."""
        env = self.env
        vertex = env.next_vertex() if visible else 0
        started = time.monotonic()
        if visible:
            env.events(StepStarted(vertex, self.title(index, text), self.stage_name, location))
        key = inputs.key()
        self.keys.append(key)
        record = None if self.no_cache else env.cache.get(key)
        if (
            record is not None
            and record.layer is not None
            and not env.store.has(Digest.parse(record.layer.digest))
            and not (record.data.get("layer_source") and env.snapshots.has(record.layer.diff_id))
        ):
            record = None  # the layer was pruned: run again
        position = StepPosition(env.options.scope, self.stage_name, index)
        previous = env.cache.last_inputs(position)
        if record is not None:
            if env.lease is not None and record.layer is not None:
                layer_digest = Digest.parse(record.layer.digest)
                if env.store.has(layer_digest):  # a lazy layer has no blob yet
                    env.lease.add(layer_digest)
            if visible:
                env.events(StepCached(vertex))
                env.events(StepDone(vertex, time.monotonic() - started, cached=True))
        else:
            if visible:
                reason = (
                    "--no-cache"
                    if self.no_cache
                    else explain_miss(previous, inputs, parent_reason=self._parent_reason())
                )
                env.events(StepMissed(vertex, reason))
            self.previous_inputs = previous
            self.previous_snapshot = self._previous_snapshot(previous)
            try:
                outcome = run(vertex) if run is not None else Outcome(None)
            except ForkliftError as err:
                if self.cancel is not None and self.cancel.is_set():
                    # Stopped because another stage failed first: that one is the error to show.
                    from forklift.execute.scheduler import Cancelled

                    raise Cancelled() from err
                if visible:
                    env.events(StepFailed(vertex, time.monotonic() - started, err.render()))
                raise
            except Exception as err:
                if visible:
                    env.events(StepFailed(vertex, time.monotonic() - started, str(err)))
                raise
            if outcome.layer is not None and outcome.snapshot_dir is not None:
                env.snapshots.adopt(outcome.layer.diff_id, outcome.snapshot_dir)
            elif outcome.snapshot_dir is not None:
                shutil.rmtree(outcome.snapshot_dir, ignore_errors=True)
            data = {"layer_source": outcome.source_kind} if outcome.source_kind and outcome.layer else {}
            record = CacheRecord(key=key, created=env.now(), layer=outcome.layer, data=data)
            env.cache.put(record, inputs)
            env.wrote_cache = True
            if record.layer is not None:
                env.recorded_layers.add(record.layer.digest)
            self.last_miss = text
            self.ran = True
            if visible:
                env.events(StepDone(vertex, time.monotonic() - started))
        if previous != inputs:
            env.cache.remember(position, inputs)
        if after is not None:
            state = after(state)
        entry = HistoryEntry(
            created=record.created,
            created_by=history,
            comment=HISTORY_COMMENT,
            empty_layer=record.layer is None,
        )
        if record.layer is None:
            return state.with_history(entry)
        state = state.with_layer(layer_descriptor(record.layer), record.layer.diff_id, entry)
        kind = record.data.get("layer_source")
        if kind:
            state = replace(state, lazy={**state.lazy, record.layer.digest: kind})
        return state

    def _previous_snapshot(self, previous: StepInputs | None) -> Path | None:
        if previous is None:
            return None
        before = self.env.cache.get(previous.key())
        if before is None or before.layer is None:
            return None
        path = self.env.snapshots.path(before.layer.diff_id)
        return path if path.is_dir() else None

    def _parent_reason(self) -> str:
        if self.last_miss is not None:
            return f"an earlier step changed ({self.last_miss})"
        return "the base changed"


def check_cancel(cancel: threading.Event) -> None:
    """Stop between steps when another stage failed."""
    if cancel.is_set():
        from forklift.execute.scheduler import Cancelled

        raise Cancelled()


def sorted_env(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """An environment as sorted pairs (for cache inputs)."""
    return tuple(sorted(env.items()))
