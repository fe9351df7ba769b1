"""docker-archive (what ``docker save`` writes and ``docker load`` reads) and rootfs import.

Reading accepts every form Docker and skopeo write: ``manifest.json`` pointing at ``<id>/layer.tar``
(Docker before 25), at ``<diff_id>.tar`` (skopeo), or at ``blobs/sha256/<hex>`` inside an OCI
layout (Docker 25 and later). Layers may be plain, gzip or zstd tars.

Writing produces the Docker 25 form: an OCI layout (``oci-layout``, ``index.json``, blobs) plus
``manifest.json`` and ``repositories`` pointing at the same blobs, so one file is both a
docker-archive and an OCI layout tar. Layers stay as stored (``docker load`` decompresses them and
checks their diff_ids).
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from forklift.errors import ImageError
from forklift.fsatomic import atomic_writer
from forklift.oci.compression import Compression, compress_file, detect_compression, open_uncompressed
from forklift.oci.image import Image, image_manifest
from forklift.oci.layout import (
    BundleWriter,
    FileSource,
    LoadedImage,
    blob_name,
    load_layout_source,
    open_source,
    read_source_bytes,
    write_layout_files,
)
from forklift.oci.model import (
    ContainerConfig,
    Descriptor,
    Digest,
    HistoryEntry,
    ImageConfig,
    Manifest,
    MediaType,
    Platform,
)
from forklift.oci.registry.reference import parse_reference
from forklift.oci.store import Lease, Store

_LAYER_TYPES = {
    "none": MediaType.OCI_LAYER,
    "gzip": MediaType.OCI_LAYER_GZIP,
    "zstd": MediaType.OCI_LAYER_ZSTD,
}


# ---- writing -------------------------------------------------------------------------------------------


def write_archive(dest: Path, images: Sequence[tuple[Sequence[str], Image]]) -> None:
    """Write ``images`` (names, image) as a docker-archive tar at ``dest`` (atomically renamed).

    Names are shown in ``manifest.json`` as Docker shows them (``busybox:latest``).
    """
    with atomic_writer(dest, durable=False) as out:  # a device or a pipe is written through
        writer = BundleWriter(dest, as_tar=True, fileobj=out)
        try:
            _write_archive_files(writer, images)
        finally:
            writer.close()


def _write_archive_files(writer: BundleWriter, images: Sequence[tuple[Sequence[str], Image]]) -> None:
    entries: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    layout: list[tuple[str | None, Image]] = []
    for names, img in images:
        manifest = image_manifest(img)
        refs = [parse_reference(n) for n in names]
        tags = [r.familiar() for r in refs if r.tag and r.digest is None]
        entries.append(
            {
                "Config": blob_name(manifest.config.digest),
                "RepoTags": tags,
                "Layers": [blob_name(d.digest) for d in manifest.layers],
            }
        )
        for ref in refs:
            if ref.tag and manifest.layers:
                top = manifest.layers[-1].digest.hex
                repositories.setdefault(ref.familiar_repository, {})[ref.tag] = top
        layout_names: list[str | None] = list(names) or [None]
        layout.extend((n, img) for n in layout_names)
    write_layout_files(writer, layout)
    writer.add_bytes("manifest.json", json.dumps(entries, separators=(",", ":")).encode())
    writer.add_bytes("repositories", json.dumps(repositories, separators=(",", ":")).encode())


# ---- reading -------------------------------------------------------------------------------------------


def _read_manifest_json(source: FileSource) -> list[dict[str, Any]]:
    try:
        entries = json.loads(read_source_bytes(source, "manifest.json"))
    except ValueError as err:
        raise ImageError(f"manifest.json is not valid JSON: {err}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ImageError("manifest.json must be a list of objects")
    for e in entries:
        if not isinstance(e.get("Config"), str) or not isinstance(e.get("Layers") or [], list):
            raise ImageError("manifest.json entry needs Config and Layers")
    return entries


def _put_layer(source: FileSource, store: Store, name: str, lease: Lease) -> Descriptor:
    with source.open(name) as fh:
        kind = detect_compression(fh.read(6))
    if kind not in _LAYER_TYPES:
        raise ImageError(f"layer {name} is {kind}-compressed; layers must be plain, gzip or zstd tars")
    expected = None
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == "blobs":
        with contextlib.suppress(ImageError):
            expected = Digest(parts[1], parts[2])
    with source.open(name) as fh:
        digest, size = store.put_stream(fh, expected, lease=lease)
    return Descriptor(_LAYER_TYPES[kind], digest, size)


def load_archive(store: Store, path: Path, *, name: str | None = None) -> list[LoadedImage]:
    """Load a docker-archive into ``store``: blobs verified, every RepoTag made a reference.

    An archive without names is loaded unnamed (or named ``name`` when it holds one image).
    """
    source = open_source(path)
    try:
        return load_archive_source(store, source, name=name)
    finally:
        source.close()


def load_archive_source(store: Store, source: FileSource, *, name: str | None = None) -> list[LoadedImage]:
    """``load_archive`` for an opened bundle."""
    entries = _read_manifest_json(source)
    if not entries:
        raise ImageError("manifest.json lists no images")
    if source.exists("index.json"):
        return _load_hybrid(store, source, entries, name)
    out: list[LoadedImage] = []
    with store.lease() as lease:
        for entry in entries:
            raw_config = read_source_bytes(source, entry["Config"])
            config = ImageConfig.from_bytes(raw_config)
            layers = [_put_layer(source, store, str(n), lease) for n in entry.get("Layers") or []]
            if len(layers) != len(config.diff_ids):
                raise ImageError(
                    f"{entry['Config']}: {len(layers)} layers but {len(config.diff_ids)} diff_ids"
                )
            for layer, diff_id in zip(layers, config.diff_ids):
                if layer.media_type == MediaType.OCI_LAYER and layer.digest != diff_id:
                    raise ImageError(f"layer {layer.digest} does not match its diff_id {diff_id}")
            config_digest = store.put_bytes(raw_config, lease=lease)
            manifest = Manifest(
                config=Descriptor(MediaType.OCI_CONFIG, config_digest, len(raw_config)), layers=tuple(layers)
            )
            digest = store.put_bytes(manifest.to_bytes(), lease=lease)
            out.extend(_name(store, digest, _repo_tags(entry), name if len(entries) == 1 else None))
    return out


def _repo_tags(entry: dict[str, Any]) -> list[str]:
    tags = entry.get("RepoTags") or []
    return [t for t in tags if isinstance(t, str)]


def _name(store: Store, digest: Digest, tags: list[str], name: str | None) -> list[LoadedImage]:
    names = [str(parse_reference(t)) for t in tags] or ([str(parse_reference(name))] if name else [])
    for n in names:
        store.set_ref(n, digest)
    return [LoadedImage(digest, n) for n in names] or [LoadedImage(digest, None)]


def _load_hybrid(
    store: Store, source: FileSource, entries: list[dict[str, Any]], name: str | None
) -> list[LoadedImage]:
    """An OCI layout with a manifest.json (Docker 25+): load the layout, name images by RepoTags."""
    loaded = load_layout_source(store, source, name=name)
    by_config: dict[str, list[str]] = {}
    for entry in entries:
        by_config.setdefault(entry["Config"].rsplit("/", 1)[-1].removesuffix(".json"), []).extend(
            _repo_tags(entry)
        )
    out: list[LoadedImage] = []
    for item in loaded:
        raw = store.read_blob(item.digest)
        try:
            config_hex = Manifest.from_bytes(raw).config.digest.hex
        except ImageError:
            out.append(item)  # an index: named by the layout's annotations only
            continue
        tags = [str(parse_reference(t)) for t in by_config.get(config_hex, [])]
        for t in tags:
            store.set_ref(t, item.digest)
        known = {item.name} if item.name else set()
        out.extend(LoadedImage(item.digest, t) for t in tags if t not in known)
        if item.name or not tags:
            out.append(item)
    return out


def load_bundle(store: Store, path: Path, *, name: str | None = None) -> list[LoadedImage]:
    """Load a docker-archive or an OCI layout (directory or tar), whichever ``path`` is."""
    source = open_source(path)
    try:
        if source.exists("manifest.json"):
            return load_archive_source(store, source, name=name)
        if source.exists("index.json"):
            return load_layout_source(store, source, name=name)
        raise ImageError(f"{path} is neither a docker-archive (manifest.json) nor an OCI layout (index.json)")
    finally:
        source.close()


# ---- rootfs import -------------------------------------------------------------------------------------


class _HeadRecorder(io.RawIOBase):
    """Passes reads through and keeps the first 512 bytes (to check the input is a tar)."""

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__()
        self._inner = inner
        self.head = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._inner.read(len(view))
        view[: len(data)] = data
        if len(self.head) < 512:
            self.head += data[: 512 - len(self.head)]
        return len(data)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def import_rootfs(
    store: Store,
    tar_path: Path,
    *,
    name: str | None = None,
    compression: Compression = "gzip",
    platform: Platform | None = None,
    created: str | None = None,
    config: ContainerConfig | None = None,
) -> Digest:
    """Make a one-layer image from a root filesystem tarball (plain, gzip, zstd, bzip2 or xz), as
    ``docker import`` does; returns the manifest digest and names it ``name`` (canonical) if given."""
    plat = platform or Platform.host()
    when = created or _now()
    with store.lease() as lease, open(tar_path, "rb") as fh:
        with open_uncompressed(fh) as raw:
            recorder = _HeadRecorder(raw)
            with store.writer() as w:
                result = compress_file(recorder, w, compression)  # type: ignore[arg-type]
                head = recorder.head
                if len(head) < 512 or head[257:262] != b"ustar":
                    raise ImageError(f"{tar_path} is not a tar archive")
                digest, size = w.commit(Digest.parse(result.digest), lease=lease)
        image_cfg = ImageConfig(
            architecture=plat.architecture,
            os=plat.os,
            variant=plat.variant,
            created=when,
            config=config or ContainerConfig(),
            diff_ids=(Digest.parse(result.diff_id),),
            history=(
                HistoryEntry(
                    created=when, created_by="forklift import", comment=f"Imported from {tar_path.name}"
                ),
            ),
        )
        raw_config = image_cfg.to_bytes()
        config_digest = store.put_bytes(raw_config, lease=lease)
        manifest = Manifest(
            config=Descriptor(MediaType.OCI_CONFIG, config_digest, len(raw_config)),
            layers=(Descriptor(_LAYER_TYPES[compression], digest, size),),
        )
        manifest_digest = store.put_bytes(manifest.to_bytes(), lease=lease)
        if name is not None:
            store.set_ref(name, manifest_digest)
    return manifest_digest
