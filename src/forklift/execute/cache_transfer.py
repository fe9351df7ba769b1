"""The build cache between machines: ``--cache-to`` and ``--cache-from`` as ordinary OCI artifacts.

A cache export is one OCI image manifest (``artifactType`` ``application/vnd.forklift.cache.v1+json``)
whose config blob is a JSON document listing cache entries (key -> the step result exactly as
``execute.cache`` records it: layer digest/diff_id/size/media type, history time, op data, and the
inputs that made the key), and whose layers are the layer blobs those entries use, compressed for
transport (gzip by default; each descriptor carries the layer's diff_id as an annotation). Any
registry stores it, and ``type=local`` writes it as an OCI image layout directory, tagged ``cache``.

Import is the inverse: the layer blobs go into the store in the form the entries name (a gzip blob
of an uncompressed store layer is decompressed and checked against the diff_id), then the entries
go into the local cache, so a build on an empty store gets every exported step as a cache hit and
the same image ID (and, for forklift's uncompressed store layers, the same manifest digest).

Which entries: the caller says which keys each stage used and which stages are final
(``StageCacheKeys``); ``mode=min`` exports the final stages' entries, ``mode=max`` every stage's.
``forklift build`` takes them from each ``StageResult.keys``; ``RecordingBuildCache`` (a
``BuildCache`` that notes the keys each stage looks up or writes) serves callers that drive the
engine without those results. An export with no entry at all (a build
answered from the whole-build memo records no keys) writes nothing, so it never replaces a good
cache with an empty one.

One thin adapter stands in for what the engine keeps private, until it offers it: ``_layer_blob`` writes
a lazily kept layer's blob from its snapshot as ``engine.materialize_layers`` does (the engine could
offer ``write_layer_blob(store, snapshots, layer: LayerRef, kind: str, source_date_epoch)``).
"""

from __future__ import annotations

import io
import json
import os
import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from forklift.errors import DigestMismatch, ForkliftError, ImageError
from forklift.execute.cache import (
    CACHE_VERSION,
    BuildCache,
    CacheRecord,
    LayerRef,
    StepInputs,
    StepPosition,
    entry_json,
    record_from_json,
)
from forklift.oci.model import Descriptor, Digest, Index, Manifest, MediaType, canonical_json
from forklift.oci.store import Lease, Store
from forklift.records import record

if TYPE_CHECKING:
    from forklift.oci.compression import Compression
    from forklift.oci.registry.auth import Credentials
    from forklift.oci.registry.client import RegistryClient, RegistryOptions
    from forklift.oci.registry.reference import Reference

CACHE_ARTIFACT_TYPE = "application/vnd.forklift.cache.v1+json"
CACHE_CONFIG_TYPE = "application/vnd.forklift.cache.config.v1+json"
DIFF_ID_ANNOTATION = "vnd.forklift.cache.diff_id"
REF_NAME = "org.opencontainers.image.ref.name"
DEFAULT_LOCAL_TAG = "cache"
DOCUMENT_SCHEMA = "forklift-cache-export-v1"

CacheMode = Literal["min", "max"]
CacheKind = Literal["registry", "local"]

# buildx attributes forklift accepts and has no use for (its export is always an OCI manifest).
_IGNORED_ATTRS = frozenset({"oci-mediatypes", "image-manifest", "compression-level", "force-compression"})
_COMPRESSION_NAMES: Mapping[str, Compression] = {"gzip": "gzip", "zstd": "zstd", "uncompressed": "none"}


# ---- specs -------------------------------------------------------------------------------------------


@record(kw_only=True)
class CacheDestination:
    """Where ``--cache-to`` writes: a registry reference or a local OCI layout directory."""

    type: CacheKind
    ref: str | None = None  # registry: the reference the cache manifest is pushed to
    dest: Path | None = None  # local: the layout directory
    mode: CacheMode = "min"
    compression: Compression = "gzip"
    tag: str = DEFAULT_LOCAL_TAG  # local: the layout's tag for the cache manifest
    ignore_error: bool = False  # a failed export is a warning, not a failed build


@record(kw_only=True)
class CacheSource:
    """Where ``--cache-from`` reads: a registry reference or a local OCI layout directory."""

    type: CacheKind
    ref: str | None = None
    src: Path | None = None
    tag: str = DEFAULT_LOCAL_TAG  # local: which tag of the layout to read
    digest: str | None = None  # local: the manifest digest to read instead of the tag


def _split_spec(text: str, flag: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise ForkliftError(f"invalid {flag} {text!r}: {part!r} is not key=value")
        key = key.strip().lower()
        if key in fields:
            raise ForkliftError(f"invalid {flag} {text!r}: {key} is given twice")
        fields[key] = value.strip()
    return fields


def _bool(value: str, flag: str, key: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes", ""):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ForkliftError(f"invalid {flag}: {key}={value!r} is not true or false")


def _check_ref(ref: str, flag: str) -> str:
    from forklift.oci.registry.reference import parse_reference

    try:
        parse_reference(ref)
    except ImageError as err:
        raise ForkliftError(f"invalid {flag}: ref={ref!r}: {err.message}") from None
    return ref


def _check_tag(tag: str, flag: str) -> str:
    import re

    if not re.fullmatch(r"[\w][\w.-]{0,127}", tag):
        raise ForkliftError(f"invalid {flag}: tag={tag!r} is not a valid tag")
    return tag


def parse_cache_spec(text: str, *, export: bool) -> CacheDestination | CacheSource:
    """Parse a buildx-style cache spec: ``--cache-to`` when ``export``, else ``--cache-from``.

    ``type=registry,ref=REF[,mode=min|max][,compression=gzip|zstd|uncompressed][,ignore-error=true]``,
    ``type=local,dest=DIR[,mode=...][,tag=T]`` (export), ``type=local,src=DIR[,tag=T|digest=D]``
    (import). A bare ``REF`` means ``type=registry,ref=REF``. Raises ForkliftError for bad specs.
    """
    flag = "--cache-to" if export else "--cache-from"
    text = text.strip()
    if not text:
        raise ForkliftError(
            f"invalid {flag}: empty spec", hint="e.g. type=registry,ref=registry:5000/app:cache"
        )
    fields = {"type": "registry", "ref": text} if "=" not in text else _split_spec(text, flag)
    kind = fields.pop("type", "")
    if kind not in ("registry", "local"):
        hint = "type=registry,ref=REF or type=local," + ("dest=DIR" if export else "src=DIR")
        if not kind:
            raise ForkliftError(f"invalid {flag} {text!r}: type= is missing", hint=hint)
        raise ForkliftError(f"unsupported {flag} type {kind!r}", hint=hint)
    for key in _IGNORED_ATTRS:
        fields.pop(key, None)
    result: CacheDestination | CacheSource
    if export:
        result = _parse_destination(kind, fields, flag)
    else:
        result = _parse_source(kind, fields, flag)
    if fields:
        raise ForkliftError(
            f"invalid {flag} {text!r}: unknown attribute{'s' if len(fields) > 1 else ''} "
            + ", ".join(sorted(fields))
        )
    return result


def _parse_destination(kind: str, fields: dict[str, str], flag: str) -> CacheDestination:
    mode = fields.pop("mode", "min").lower()
    if mode not in ("min", "max"):
        raise ForkliftError(f"invalid {flag}: mode={mode!r} (min or max)")
    compression_name = fields.pop("compression", "gzip").lower()
    if compression_name not in _COMPRESSION_NAMES:
        raise ForkliftError(f"invalid {flag}: compression={compression_name!r} (gzip, zstd or uncompressed)")
    ignore_error = _bool(fields.pop("ignore-error", "false"), flag, "ignore-error")
    common: dict[str, Any] = {
        "mode": mode,
        "compression": _COMPRESSION_NAMES[compression_name],
        "ignore_error": ignore_error,
    }
    if kind == "registry":
        ref = fields.pop("ref", "")
        if not ref:
            raise ForkliftError(f"invalid {flag}: type=registry needs ref=REF")
        return CacheDestination(type="registry", ref=_check_ref(ref, flag), **common)
    dest = fields.pop("dest", "")
    if not dest:
        raise ForkliftError(f"invalid {flag}: type=local needs dest=DIR")
    tag = _check_tag(fields.pop("tag", DEFAULT_LOCAL_TAG), flag)
    return CacheDestination(type="local", dest=Path(dest), tag=tag, **common)


def _parse_source(kind: str, fields: dict[str, str], flag: str) -> CacheSource:
    if kind == "registry":
        ref = fields.pop("ref", "")
        if not ref:
            raise ForkliftError(f"invalid {flag}: type=registry needs ref=REF")
        return CacheSource(type="registry", ref=_check_ref(ref, flag))
    src = fields.pop("src", "")
    if not src:
        raise ForkliftError(f"invalid {flag}: type=local needs src=DIR")
    tag = _check_tag(fields.pop("tag", DEFAULT_LOCAL_TAG), flag)
    digest = fields.pop("digest", None)
    if digest is not None:
        try:
            Digest.parse(digest)
        except ImageError:
            raise ForkliftError(f"invalid {flag}: digest={digest!r} is not a digest") from None
    return CacheSource(type="local", src=Path(src), tag=tag, digest=digest)


def parse_cache_to(text: str) -> CacheDestination:
    """``parse_cache_spec(text, export=True)``, typed as a destination."""
    result = parse_cache_spec(text, export=True)
    assert isinstance(result, CacheDestination)
    return result


def parse_cache_from(text: str) -> CacheSource:
    """``parse_cache_spec(text, export=False)``, typed as a source."""
    result = parse_cache_spec(text, export=False)
    assert isinstance(result, CacheSource)
    return result


# ---- which entries -----------------------------------------------------------------------------------


@record
class StageCacheKeys:
    """The cache keys one stage of a build used, in step order, and whether the stage is a target."""

    stage: str
    keys: tuple[str, ...]
    final: bool = False


def select_keys(stages: Sequence[StageCacheKeys], mode: CacheMode) -> list[str]:
    """The keys to export, in order, each once: the final stages' (``min``) or every stage's (``max``)."""
    out: dict[str, None] = {}
    for stage in stages:
        if mode == "max" or stage.final:
            out.update(dict.fromkeys(stage.keys))
    return list(out)


class RecordingBuildCache(BuildCache):
    """A ``BuildCache`` that notes which keys each stage looked up or stored.

    The engine calls ``get(key)`` and then ``last_inputs(position)`` for every step (``put`` after,
    on a miss), from the thread running the stage; a per-thread pending key ties each key to its
    stage. Build with it and call ``stage_keys`` afterwards for ``export_cache``.
    """

    def __init__(self, store_root: Path) -> None:
        super().__init__(store_root)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._by_stage: dict[str, dict[str, None]] = {}

    def _note(self, stage: str, key: str) -> None:
        with self._lock:
            self._by_stage.setdefault(stage, {})[key] = None

    def get(self, key: str) -> CacheRecord | None:
        """``BuildCache.get``, remembering ``key`` for the stage asking next."""
        self._local.pending = key
        return super().get(key)

    def last_inputs(self, position: StepPosition) -> StepInputs | None:
        """``BuildCache.last_inputs``; binds the pending key to ``position``'s stage."""
        self._local.stage = position.stage
        pending = getattr(self._local, "pending", None)
        if pending is not None:
            self._note(position.stage, pending)
            self._local.pending = None
        return super().last_inputs(position)

    def put(self, record: CacheRecord, inputs: StepInputs) -> None:
        """``BuildCache.put``, noting the key for the stage this thread is running."""
        super().put(record, inputs)
        stage = getattr(self._local, "stage", None)
        if stage is not None:
            self._note(stage, record.key)

    def used_keys(self) -> dict[str, tuple[str, ...]]:
        """Stage name -> the keys it used, in the order the steps ran."""
        with self._lock:
            return {stage: tuple(keys) for stage, keys in self._by_stage.items()}

    def stage_keys(self, final_stages: Collection[str]) -> tuple[StageCacheKeys, ...]:
        """What ``export_cache`` takes: every stage's keys, those named in ``final_stages`` final."""
        return tuple(
            StageCacheKeys(stage, keys, final=stage in final_stages)
            for stage, keys in self.used_keys().items()
        )


# ---- the cache document ------------------------------------------------------------------------------


@record
class CacheEntry:
    """One exported step result: the record and the inputs that made its key."""

    record: CacheRecord
    inputs: StepInputs

    def to_json(self) -> dict[str, Any]:
        """The entry as the cache document holds it (``execute.cache``'s record format plus key)."""
        return {"key": self.record.key, **entry_json(self.record, self.inputs)}

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> CacheEntry:
        """The inverse of ``to_json``; ImageError for a malformed entry."""
        try:
            inputs = StepInputs.from_json(doc["inputs"])
            record = record_from_json(str(doc["key"]), doc)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ImageError(f"the cache export holds a malformed entry ({err!r})") from None
        if inputs.key() != record.key:
            # The key is a digest of the inputs: an entry whose inputs do not make its key is not
            # trusted (and would never be looked up by a build anyway).
            raise ImageError(f"the cache export's entry {record.key} does not match its inputs")
        return CacheEntry(record, inputs)


@record
class CacheDocument:
    """The config blob of a cache export: which stages, and their entries."""

    mode: CacheMode
    stages: tuple[StageCacheKeys, ...]
    entries: tuple[CacheEntry, ...]

    def to_bytes(self) -> bytes:
        """Canonical JSON (deterministic: the same cache exports the same blob)."""
        return canonical_json(
            {
                "schema": DOCUMENT_SCHEMA,
                "cache_version": CACHE_VERSION,
                "mode": self.mode,
                "stages": [{"name": s.stage, "final": s.final, "keys": list(s.keys)} for s in self.stages],
                "entries": [e.to_json() for e in self.entries],
            }
        )

    @staticmethod
    def from_bytes(raw: bytes) -> CacheDocument:
        """Parse a cache document; ImageError when it is not one forklift can read."""
        try:
            doc = json.loads(raw)
        except ValueError as err:
            raise ImageError(f"the cache export's config is not JSON: {err}") from None
        if not isinstance(doc, dict) or doc.get("schema") != DOCUMENT_SCHEMA:
            raise ImageError("the cache export's config is not a forklift cache document")
        try:
            mode: CacheMode = "max" if doc.get("mode") == "max" else "min"
            stages = tuple(
                StageCacheKeys(str(s["name"]), tuple(str(k) for k in s["keys"]), bool(s.get("final")))
                for s in doc.get("stages", [])
            )
            entries_raw = doc.get("entries", [])
            if not isinstance(entries_raw, list):
                raise TypeError("entries is not a list")
        except (KeyError, TypeError) as err:
            raise ImageError(f"the cache document is malformed ({err!r})") from None
        return CacheDocument(mode, stages, tuple(CacheEntry.from_json(e) for e in entries_raw))


def cache_manifest(config: bytes, layers: Sequence[Descriptor]) -> Manifest:
    """The OCI manifest of a cache export: the document as config, the layer blobs as layers."""
    return Manifest(
        config=Descriptor.of(CACHE_CONFIG_TYPE, config),
        layers=tuple(layers),
        artifact_type=CACHE_ARTIFACT_TYPE,
    )


def read_cache_manifest(raw: bytes, where: str) -> Manifest:
    """Parse a manifest and check it is a forklift cache export; ForkliftError otherwise."""
    try:
        manifest = Manifest.from_bytes(raw)
    except ImageError as err:
        raise ForkliftError(f"{where} is not a forklift build cache: {err.message}") from None
    if manifest.config.media_type != CACHE_CONFIG_TYPE:
        raise ForkliftError(
            f"{where} is not a forklift build cache (its config is {manifest.config.media_type})",
            hint="--cache-from reads what forklift's --cache-to wrote",
        )
    return manifest


# ---- adapter over execute.cache (what it keeps private) -----------------------------------------------


def read_entry(cache: BuildCache, key: str) -> CacheEntry | None:
    """The record and inputs stored under ``key`` (``BuildCache.get_entry``), or None."""
    found = cache.get_entry(key)
    return None if found is None else CacheEntry(*found)


# ---- export ------------------------------------------------------------------------------------------


@record
class CacheExportResult:
    """What an export wrote: where, the manifest digest, how many entries and layers."""

    location: str
    digest: Digest | None  # the cache manifest's; None when nothing was written
    entries: int
    layers: int
    skipped: int  # keys with no usable record (pruned, or a layer no longer stored)
    # Registry only: how many layers were "uploaded", "mounted" from another repository, "existing".
    sent: Mapping[str, int] = field(default_factory=dict)

    @property
    def written(self) -> bool:
        """Whether anything was written (an export with no entries writes nothing)."""
        return self.digest is not None


def collect_entries(
    store: Store, keys: Iterable[str], lease: Lease | None = None
) -> tuple[list[CacheEntry], int]:
    """The entries for ``keys`` whose record exists and whose layer blob is stored (written from its
    snapshot first when the engine kept the layer only as a snapshot); and how many were not."""
    cache = BuildCache(store.root)
    entries: list[CacheEntry] = []
    skipped = 0
    for key in keys:
        entry = read_entry(cache, key)
        layer = entry.record.layer if entry is not None else None
        if entry is None or (layer is not None and not _layer_blob(store, entry, lease)):
            skipped += 1
            continue
        entries.append(entry)
    return entries, skipped


def _layer_blob(store: Store, entry: CacheEntry, lease: Lease | None) -> bool:
    """Whether the entry's layer blob is in the store, writing it from the step's snapshot if need be.

    The engine may record a layer lazily (``data["layer_source"]``: "upper" for a RUN, "dir" for a
    COPY) and keep only its snapshot, writing the blob when an image containing it is stored; a
    builder stage's layers never are. The writer is deterministic, so the blob written here is the
    recorded one (checked against its digest on commit). This mirrors ``engine.materialize_layers``,
    which needs a whole build environment; see the module's notes for the function cache export
    would rather call.
    """
    layer = entry.record.layer
    assert layer is not None
    digest = Digest.parse(layer.digest)
    if store.has(digest):
        if lease is not None:
            lease.add(digest)
        return True
    kind = entry.record.data.get("layer_source")
    from forklift.execute.snapshots import SnapshotCache

    snapshot = SnapshotCache(store.root).path(layer.diff_id)
    if kind not in ("upper", "dir") or not snapshot.is_dir():
        return False
    from forklift.snapshot.diff import (
        DirectorySource,
        LayerOptions,
        LayerSource,
        OverlayUpperSource,
        write_layer,
    )

    epoch = dict(entry.inputs.metadata).get("source_date_epoch")
    source: LayerSource = OverlayUpperSource(snapshot) if kind == "upper" else DirectorySource(snapshot)
    options = LayerOptions(compression="none", clamp_mtime=int(epoch) if epoch else None)
    try:
        with store.writer() as writer:
            write_layer(source, writer, options)
            writer.commit(digest, size=layer.size, lease=lease)
    except (DigestMismatch, OSError):
        return False  # the snapshot no longer makes that layer: leave the entry out
    return True


def _unique_layers(entries: Sequence[CacheEntry]) -> list[LayerRef]:
    seen: dict[str, LayerRef] = {}
    for entry in entries:
        layer = entry.record.layer
        if layer is not None and layer.digest not in seen:
            seen[layer.digest] = layer
    return list(seen.values())


def _transport_form(store: Store, layer: LayerRef, compression: Compression, lease: Lease) -> Descriptor:
    """The descriptor of the blob that carries ``layer``: its compressed form (made once and
    remembered in the store) for an uncompressed layer, else the stored blob as it is."""
    annotations = {DIFF_ID_ANNOTATION: layer.diff_id}
    stored = Digest.parse(layer.digest)
    is_plain = MediaType.is_layer(layer.media_type) and MediaType.compression(layer.media_type) == "none"
    if compression == "none" or not is_plain:
        return Descriptor(layer.media_type, stored, layer.size, annotations=annotations)
    diff_id = Digest.parse(layer.diff_id)
    known = store.find_compressed(diff_id, compression)
    if known is not None:
        lease.add(known[0])
        digest, size = known
    else:
        from forklift.oci.compression import compress_file

        with store.open_blob(stored, size=layer.size) as src, store.writer() as writer:
            result = compress_file(src, writer, compression)
            digest, size = writer.commit(Digest.parse(result.digest), lease=lease)
        store.record_compressed(diff_id, compression, digest, size)
    media_type = MediaType.layer(compression, docker=MediaType.is_docker(layer.media_type))
    return Descriptor(media_type, digest, size, annotations=annotations)


def export_cache(
    store: Store,
    stages: Sequence[StageCacheKeys],
    destination: CacheDestination,
    *,
    registry_options: RegistryOptions | None = None,
    credentials: Credentials | None = None,
    docker_config: Path | None = None,
) -> CacheExportResult:
    """Export the cache entries ``stages`` used (per ``destination.mode``) to ``destination``.

    ``stages``: for each stage of the build, the keys its steps used and whether it is final
    (``RecordingBuildCache.stage_keys`` gives exactly this). The export is one OCI manifest whose
    config lists the entries and whose layers are their layer blobs, compressed per
    ``destination.compression``; pushed to ``destination.ref`` or written as an OCI layout at
    ``destination.dest`` under ``destination.tag``. Raises ForkliftError subclasses on failure.
    """
    keys = select_keys(stages, destination.mode)
    with store.lease() as lease:
        entries, skipped = collect_entries(store, keys, lease)
        wanted = {e.record.key for e in entries}
        kept_stages = tuple(
            StageCacheKeys(s.stage, tuple(k for k in s.keys if k in wanted), s.final)
            for s in stages
            if destination.mode == "max" or s.final
        )
        config = CacheDocument(destination.mode, kept_stages, tuple(entries)).to_bytes()
        if not entries:
            where = str(destination.dest) if destination.dest is not None else str(destination.ref)
            return CacheExportResult(where, None, 0, 0, skipped)
        layers = [
            _transport_form(store, layer, destination.compression, lease) for layer in _unique_layers(entries)
        ]
        manifest = cache_manifest(config, layers)
        raw = manifest.to_bytes()
        sent: dict[str, int] = {}
        if destination.type == "local":
            assert destination.dest is not None
            _write_local(store, destination.dest, destination.tag, config, manifest, raw)
            location = f"{destination.dest}:{destination.tag}"
        else:
            assert destination.ref is not None
            location, sent = _push(
                store, destination.ref, config, manifest, raw,
                options=registry_options, credentials=credentials, docker_config=docker_config,
            )  # fmt: skip
    return CacheExportResult(location, Digest.of(raw), len(entries), len(layers), skipped, sent)


def _atomic_file(path: Path, write: Callable[[BinaryIO], object]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as out:
            write(out)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _bytes_writer(data: bytes) -> Callable[[BinaryIO], object]:
    return lambda out: out.write(data)


def _layout_blob(root: Path, digest: Digest) -> Path:
    return root / "blobs" / digest.algorithm / digest.hex


def _write_local(store: Store, dest: Path, tag: str, config: bytes, manifest: Manifest, raw: bytes) -> None:
    """Blobs (those already present are kept), ``oci-layout``, and ``index.json`` with the manifest
    under ``tag`` (other tags of an existing layout stay)."""
    if dest.exists() and not dest.is_dir():
        raise ForkliftError(f"--cache-to: {dest} exists and is not a directory")
    try:
        (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        for desc in manifest.layers:
            path = _layout_blob(dest, desc.digest)
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_file() and path.stat().st_size == desc.size:
                continue  # content-addressed: a CI directory kept between runs already has it

            def copy(out: BinaryIO, desc: Descriptor = desc) -> None:
                with store.open_blob(desc.digest, size=desc.size) as src:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)

            _atomic_file(path, copy)
        for digest, data in ((manifest.config.digest, config), (Digest.of(raw), raw)):
            _atomic_file(_layout_blob(dest, digest), _bytes_writer(data))
        _atomic_file(dest / "oci-layout", _bytes_writer(b'{"imageLayoutVersion":"1.0.0"}'))
        entries = [d for d in _read_layout_index(dest) if d.annotations.get(REF_NAME) != tag]
        entries.append(
            Descriptor(
                MediaType.OCI_MANIFEST,
                Digest.of(raw),
                len(raw),
                annotations={REF_NAME: tag},
                artifact_type=CACHE_ARTIFACT_TYPE,
            )
        )
        index = Index(manifests=tuple(entries)).to_bytes()
        _atomic_file(dest / "index.json", _bytes_writer(index))
    except OSError as err:
        raise ForkliftError(f"--cache-to: cannot write {dest}: {err.strerror or err}") from None


def _read_layout_index(root: Path) -> list[Descriptor]:
    try:
        raw = (root / "index.json").read_bytes()
    except FileNotFoundError:
        return []
    try:
        return list(Index.from_bytes(raw).manifests)
    except ImageError as err:
        raise ForkliftError(f"{root}/index.json is not an OCI image index: {err.message}") from None


@contextmanager
def _registry(
    ref: str, options: RegistryOptions | None, credentials: Credentials | None, docker_config: Path | None
) -> Iterator[tuple[RegistryClient, Reference]]:
    from forklift.oci.registry.client import RegistryClient
    from forklift.oci.registry.reference import parse_reference
    from forklift.oci.registry.transfer import credentials_for

    name = parse_reference(ref)
    creds = credentials if credentials is not None else credentials_for(name.domain, docker_config)
    with RegistryClient(name.domain, credentials=creds, options=options) as client:
        yield client, name


def _push(
    store: Store,
    ref: str,
    config: bytes,
    manifest: Manifest,
    raw: bytes,
    *,
    options: RegistryOptions | None,
    credentials: Credentials | None,
    docker_config: Path | None,
) -> tuple[str, dict[str, int]]:
    from forklift.oci.registry.transfer import known_sources, remember_source

    with _registry(ref, options, credentials, docker_config) as (client, name):
        if name.digest is not None:
            raise ForkliftError(f"--cache-to: push the cache to a tag, not a digest ({ref})")
        sent = {"uploaded": 0, "mounted": 0, "existing": 0}
        for desc in manifest.layers:
            if client.blob_exists(name.path, desc.digest):
                sent["existing"] += 1
                continue
            # A blob pushed or pulled before to another repository of this registry is mounted.
            session: str | None = None
            mounted = False
            for source in known_sources(store, desc.digest)[:3]:
                domain, _, path = source.partition("/")
                if domain == name.domain and path != name.path:
                    session = client.mount_blob(name.path, desc.digest, path)
                    if session is None:
                        mounted = True
                        break
            sent["mounted" if mounted else "uploaded"] += 1
            if not mounted:
                client.upload_blob(
                    name.path, desc.digest, desc.size, _blob_opener(store, desc), location=session
                )
            remember_source(store, desc.digest, name.repository)
        if not client.blob_exists(name.path, manifest.config.digest):
            client.upload_blob(name.path, manifest.config.digest, len(config), lambda: io.BytesIO(config))
        client.put_manifest(name.path, name.tag or "latest", raw, MediaType.OCI_MANIFEST)
        return str(name), sent


def _blob_opener(store: Store, desc: Descriptor) -> Callable[[], BinaryIO]:
    return lambda: store.open_blob(desc.digest, size=desc.size)


# ---- import ------------------------------------------------------------------------------------------


@record
class CacheImportResult:
    """What an import did: where from, whether a cache was there, entries written, layers fetched."""

    location: str
    found: bool
    entries: int = 0  # entries written into the local cache
    layers_fetched: int = 0  # blobs downloaded from a registry
    kept: int = 0  # entries the local cache could already reuse (left as they were)


class _LayerSource:
    """Where an import reads blobs from (a layout directory or a registry repository)."""

    def store_blob(self, store: Store, desc: Descriptor, lease: Lease) -> None:  # pragma: no cover
        raise NotImplementedError

    def open_blob(self, store: Store, desc: Descriptor, lease: Lease) -> BinaryIO:
        """The blob's bytes (unverified here: the layer made of them is checked on commit)."""
        self.store_blob(store, desc, lease)
        return store.open_blob(desc.digest, size=desc.size)


@dataclass
class _LayoutBlobs(_LayerSource):
    root: Path

    def store_blob(self, store: Store, desc: Descriptor, lease: Lease) -> None:
        try:
            store.put_file(_layout_blob(self.root, desc.digest), desc.digest, lease=lease)
        except FileNotFoundError:
            raise ForkliftError(f"--cache-from: {self.root} lacks blob {desc.digest}") from None

    def open_blob(self, store: Store, desc: Descriptor, lease: Lease) -> BinaryIO:
        # Decompressed straight from the layout file: only the layer the entries name is stored.
        try:
            return open(_layout_blob(self.root, desc.digest), "rb")  # the caller closes it
        except FileNotFoundError:
            raise ForkliftError(f"--cache-from: {self.root} lacks blob {desc.digest}") from None


@dataclass
class _RegistryBlobs(_LayerSource):
    client: RegistryClient
    repository: str
    fetched: list[Digest] = field(default_factory=list)

    def store_blob(self, store: Store, desc: Descriptor, lease: Lease) -> None:
        if store.has(desc.digest):
            lease.add(desc.digest)
            return
        sink = self.client.fetch_blob_into(
            self.repository, desc.digest, desc.size, lambda: store.writer(desc.digest.algorithm),
            hash_content=False,
        )  # fmt: skip
        sink.commit(desc.digest, size=desc.size, lease=lease)
        self.fetched.append(desc.digest)


def import_cache(
    store: Store,
    source: CacheSource,
    *,
    registry_options: RegistryOptions | None = None,
    credentials: Credentials | None = None,
    docker_config: Path | None = None,
    missing_ok: bool = True,
) -> CacheImportResult:
    """Import a cache export into ``store``: its layer blobs, then its entries into the build cache.

    A source that does not exist (no such tag, no such directory) returns ``found=False`` when
    ``missing_ok`` (BuildKit only warns then), else raises. Anything malformed raises ForkliftError.
    Layers are checked against their diff_ids (and digests) before an entry naming them is written.
    """
    from forklift.oci.registry.errors import RegistryNotFound

    if source.type == "local":
        assert source.src is not None
        location = f"{source.src}:{source.digest or source.tag}"
        raw = _local_manifest(source, missing_ok)
        if raw is None:
            return CacheImportResult(location, found=False)
        return _import(store, raw, location, _LayoutBlobs(source.src))
    assert source.ref is not None
    with _registry(source.ref, registry_options, credentials, docker_config) as (client, name):
        location = str(name)
        try:
            raw, media_type, _digest = client.get_manifest(name.path, name.manifest_ref)
        except RegistryNotFound:
            if missing_ok:
                return CacheImportResult(location, found=False)
            raise
        if not MediaType.is_manifest(media_type):
            raise ForkliftError(f"{location} is not a forklift build cache (it is a {media_type})")
        blobs = _RegistryBlobs(client, name.path)
        result = _import(store, raw, location, blobs)
        return CacheImportResult(location, True, result.entries, len(blobs.fetched), result.kept)


def _local_manifest(source: CacheSource, missing_ok: bool) -> bytes | None:
    assert source.src is not None
    root = source.src
    if not (root / "index.json").is_file():
        if missing_ok:
            return None
        raise ForkliftError(f"--cache-from: {root} is not an OCI layout (no index.json)")
    entries = _read_layout_index(root)
    if source.digest is not None:
        chosen = [d for d in entries if str(d.digest) == source.digest]
    else:
        chosen = [d for d in entries if d.annotations.get(REF_NAME) == source.tag]
    if not chosen:
        if missing_ok:
            return None
        raise ForkliftError(f"--cache-from: {root} has no cache tagged {source.digest or source.tag}")
    desc = chosen[-1]
    try:
        raw = _layout_blob(root, desc.digest).read_bytes()
    except FileNotFoundError:
        raise ForkliftError(f"--cache-from: {root} lacks its manifest {desc.digest}") from None
    if Digest.of(raw, desc.digest.algorithm) != desc.digest:
        raise ForkliftError(f"--cache-from: {root}: manifest {desc.digest} is corrupt")
    return raw


def _import(store: Store, raw: bytes, location: str, blobs: _LayerSource) -> CacheImportResult:
    manifest = read_cache_manifest(raw, location)
    cache = BuildCache(store.root)
    by_diff_id: dict[str, Descriptor] = {}
    for desc in manifest.layers:
        diff_id = desc.annotations.get(DIFF_ID_ANNOTATION)
        if diff_id:
            by_diff_id.setdefault(diff_id, desc)
    written = 0
    with store.lease() as lease:
        blobs.store_blob(store, manifest.config, lease)
        document = CacheDocument.from_bytes(
            store.read_blob(manifest.config.digest, size=manifest.config.size)
        )
        # A step this store can already reuse keeps its own record (its history time decides the
        # image ID of local builds); the rest come from the export.
        todo = [e for e in document.entries if not _usable_locally(store, cache.get(e.record.key))]
        layers: dict[str, LayerRef] = {}  # the stored layer for each record layer digest
        for entry in todo:
            layer = entry.record.layer
            if layer is None or layer.digest in layers:
                continue
            layers[layer.digest] = _import_layer(store, layer, by_diff_id, blobs, lease, location)
        for entry in todo:
            record = entry.record
            if record.layer is not None:
                record = CacheRecord(record.key, record.created, layers[record.layer.digest], record.data)
            cache.put(record, entry.inputs)
            written += 1
        # Prune keeps what the cache needs (the build does the same after it writes entries).
        store.set_roots("cache", [d for d in map(Digest.parse, cache.layer_digests()) if store.has(d)])
    return CacheImportResult(location, True, written, kept=len(document.entries) - written)


def _usable_locally(store: Store, record: CacheRecord | None) -> bool:
    """Whether a local record is a hit as it stands: its layer blob (or snapshot) is still here."""
    if record is None:
        return False
    if record.layer is None or store.has(Digest.parse(record.layer.digest)):
        return True
    from forklift.execute.snapshots import SnapshotCache

    return bool(record.data.get("layer_source")) and SnapshotCache(store.root).has(record.layer.diff_id)


def _import_layer(
    store: Store,
    layer: LayerRef,
    by_diff_id: Mapping[str, Descriptor],
    blobs: _LayerSource,
    lease: Lease,
    location: str,
) -> LayerRef:
    """Put ``layer`` into the store from the export; returns the LayerRef the entry should name."""
    stored = Digest.parse(layer.digest)
    if store.has(stored):
        lease.add(stored)
        return layer
    desc = by_diff_id.get(layer.diff_id)
    if desc is None:
        raise ForkliftError(f"{location}: the cache export lacks the layer {layer.diff_id}")
    from forklift.oci.compression import open_uncompressed

    plain = MediaType.is_layer(layer.media_type) and MediaType.compression(layer.media_type) == "none"
    try:
        if desc.digest == stored:
            blobs.store_blob(store, desc, lease)  # verified against its digest on the way in
            return layer
        if plain and layer.digest == layer.diff_id:
            # The store keeps this layer uncompressed: rebuild exactly that blob from the transport form.
            with blobs.open_blob(store, desc, lease) as fh, open_uncompressed(fh) as tar:
                store.put_stream(tar, stored, size=layer.size, lease=lease)
            compression = (
                MediaType.compression(desc.media_type) if MediaType.is_layer(desc.media_type) else ""
            )
            if compression in ("gzip", "zstd") and store.has(desc.digest):
                # The transport blob (fetched from a registry) is this layer's compressed form: a later
                # push or --cache-to sends it as it is instead of compressing again.
                store.record_compressed(Digest.parse(layer.diff_id), compression, desc.digest, desc.size)
            return layer
        # Stored in some other form: keep the transport blob, checked against the diff_id.
        blobs.store_blob(store, desc, lease)
        with store.open_blob(desc.digest, size=desc.size) as fh, open_uncompressed(fh) as tar:
            _check_diff_id(tar, layer.diff_id)
    except ImageError as err:
        raise ForkliftError(
            f"{location}: layer {layer.diff_id} of the cache export is corrupt ({err.message})",
            hint="nothing of that layer was kept, and no cache entry was written",
        ) from None
    return LayerRef(str(desc.digest), layer.diff_id, desc.size, desc.media_type)


def _check_diff_id(tar: BinaryIO, diff_id: str) -> None:
    expected = Digest.parse(diff_id)
    hasher = expected.hasher()
    while chunk := tar.read(1 << 20):
        hasher.update(chunk)
    if hasher.hexdigest() != expected.hex:
        raise DigestMismatch(f"layer content does not match {diff_id}")
