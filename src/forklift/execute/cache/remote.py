"""The build cache between machines: ``--cache-to`` and ``--cache-from`` as ordinary OCI artifacts.

Export: the entries a build used (``recording``), their layer blobs in transport form (gzip by
default: an uncompressed store layer is compressed once and the compressed form remembered in the
store), one manifest (``document``), written as an OCI layout tagged ``cache`` or pushed to a
registry (``backends``). An export with no entry at all (a build answered from the whole-build memo
records no keys) writes nothing, so it never replaces a good cache with an empty one.

Import is the inverse: the layer blobs go into the store in the form the entries name (a gzip blob
of an uncompressed store layer is decompressed and checked against the diff_id), then the entries
go into the local cache, so a build on an empty store gets every exported step as a cache hit and
the same image ID (and, for forklift's uncompressed store layers, the same manifest digest).

Which entries: the caller says which keys each stage used and which stages are final
(``StageCacheKeys``); ``mode=min`` exports the final stages' entries, ``mode=max`` every stage's.
``forklift build`` takes them from each ``StageResult.keys``; ``RecordingBuildCache`` serves callers
that drive the engine without those results.

One thin adapter stands in for what the engine keeps private, until it offers it: ``_layer_blob``
writes a lazily kept layer's blob from its snapshot as ``engine.materialize_layers`` does (the engine
could offer ``write_layer_blob(store, snapshots, layer: LayerRef, kind: str, source_date_epoch)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from forklift.errors import DigestMismatch, ForkliftError, ImageError
from forklift.execute.cache.backends import (
    BlobSource,
    LayoutBlobs,
    RegistryBlobs,
    local_manifest,
    push,
    registry,
    write_local,
)
from forklift.execute.cache.document import (
    DIFF_ID_ANNOTATION,
    CacheDocument,
    CacheEntry,
    cache_manifest,
    read_cache_manifest,
    read_entry,
)
from forklift.execute.cache.format import CacheRecord, LayerRef
from forklift.execute.cache.recording import StageCacheKeys, select_keys
from forklift.execute.cache.specs import CacheDestination, CacheSource
from forklift.execute.cache.steps import BuildCache
from forklift.oci.model import Descriptor, Digest, MediaType
from forklift.oci.store import Lease, Store
from forklift.records import record

if TYPE_CHECKING:
    from forklift.oci.compression import Compression
    from forklift.oci.registry.auth import Credentials
    from forklift.oci.registry.client import RegistryOptions


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
            write_local(store, destination.dest, destination.tag, config, manifest, raw)
            location = f"{destination.dest}:{destination.tag}"
        else:
            assert destination.ref is not None
            location, sent = push(
                store, destination.ref, config, manifest, raw,
                options=registry_options, credentials=credentials, docker_config=docker_config,
            )  # fmt: skip
    return CacheExportResult(location, Digest.of(raw), len(entries), len(layers), skipped, sent)


# ---- import ------------------------------------------------------------------------------------------


@record
class CacheImportResult:
    """What an import did: where from, whether a cache was there, entries written, layers fetched."""

    location: str
    found: bool
    entries: int = 0  # entries written into the local cache
    layers_fetched: int = 0  # blobs downloaded from a registry
    kept: int = 0  # entries the local cache could already reuse (left as they were)


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
        raw = local_manifest(source, missing_ok)
        if raw is None:
            return CacheImportResult(location, found=False)
        return _import(store, raw, location, LayoutBlobs(source.src))
    assert source.ref is not None
    with registry(source.ref, registry_options, credentials, docker_config) as (client, name):
        location = str(name)
        try:
            raw, media_type, _digest = client.get_manifest(name.path, name.manifest_ref)
        except RegistryNotFound:
            if missing_ok:
                return CacheImportResult(location, found=False)
            raise
        if not MediaType.is_manifest(media_type):
            raise ForkliftError(f"{location} is not a forklift build cache (it is a {media_type})")
        blobs = RegistryBlobs(client, name.path)
        result = _import(store, raw, location, blobs)
        return CacheImportResult(location, True, result.entries, len(blobs.fetched), result.kept)


def _import(store: Store, raw: bytes, location: str, blobs: BlobSource) -> CacheImportResult:
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
    blobs: BlobSource,
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
