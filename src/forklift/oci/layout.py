"""The OCI image layout (a directory or a tar of one): read it, load it into a store, write it.

A layout is ``oci-layout``, ``index.json`` and ``blobs/<alg>/<hex>``. Each ``index.json`` entry may
carry ``org.opencontainers.image.ref.name`` (a tag such as ``latest``, or a full reference) and
``io.containerd.image.name`` (the full name, as Docker and containerd write it); forklift writes
both and reads either. Blobs are copied byte for byte: loading and saving again gives identical
manifests, configs and layers.

Tars are written deterministically: sorted, each blob once, owner 0:0, mtime 0. Files of a layout
directory are each replaced atomically (``fsatomic``); ``add_to_layout`` adds one manifest (such as a
build cache export) to a directory under a tag, keeping its other entries and blobs.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO, Protocol

from forklift.errors import ImageError
from forklift.fsatomic import atomic_writer
from forklift.oci.image import Image, image_manifest, manifest_descriptor
from forklift.oci.model import Descriptor, Digest, Index, MediaType, child_descriptors
from forklift.oci.registry.reference import parse_reference
from forklift.oci.store import Lease, Store
from forklift.records import record

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
LAYOUT_FILE = "oci-layout"
LAYOUT_VERSION = b'{"imageLayoutVersion":"1.0.0"}'
_CHUNK = 1 << 20


# ---- reading files from a directory or a tar ---------------------------------------------------------


class FileSource(Protocol):
    """Files of an unpacked or packed bundle (layout directory, layout tar, docker-archive)."""

    def exists(self, name: str) -> bool:
        """Whether the bundle has a regular file ``name`` (relative, ``/``-separated)."""
        ...

    def open(self, name: str) -> BinaryIO:
        """Open file ``name``; ImageError when missing."""
        ...

    def close(self) -> None:
        """Release the bundle."""
        ...


def _clean(name: str) -> str:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"invalid path in image bundle: {name!r}")
    return "/".join(parts)


class DirSource:
    """A bundle unpacked in a directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def exists(self, name: str) -> bool:
        """Whether the file exists."""
        return (self.root / _clean(name)).is_file()

    def open(self, name: str) -> BinaryIO:
        """Open a file of the bundle."""
        try:
            return open(self.root / _clean(name), "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise ImageError(f"{self.root}: missing {name}") from None

    def close(self) -> None:
        """Nothing to release."""


class TarSource:
    """A bundle packed in a tar file (uncompressed, or gzip/zstd-compressed via a temp copy)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed in close()
        except (tarfile.TarError, OSError) as err:
            raise ImageError(f"{path}: not a readable tar archive ({err})") from None
        self._members: dict[str, tarfile.TarInfo] = {}
        for member in self._tar.getmembers():
            with contextlib.suppress(ImageError):
                self._members[_clean(member.name)] = member

    def _member(self, name: str) -> tarfile.TarInfo | None:
        member = self._members.get(_clean(name))
        for _ in range(8):  # docker-archive layers may be symlinks to another layer's file
            if member is None or not member.issym():
                break
            target = _clean(str(Path(member.name).parent / member.linkname))
            member = self._members.get(target)
        return member if member is not None and member.isfile() else None

    def exists(self, name: str) -> bool:
        """Whether the tar has a regular file ``name``."""
        return self._member(name) is not None

    def open(self, name: str) -> BinaryIO:
        """Open a file of the tar."""
        member = self._member(name)
        fh = self._tar.extractfile(member) if member is not None else None
        if fh is None:
            raise ImageError(f"{self.path}: missing {name}")
        return fh  # type: ignore[return-value]

    def close(self) -> None:
        """Close the tar."""
        self._tar.close()


def open_source(path: Path) -> FileSource:
    """A FileSource for a directory or a tar file at ``path``."""
    if path.is_dir():
        return DirSource(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file or directory")
    return TarSource(path)


def read_source_bytes(source: FileSource, name: str, *, limit: int = 64 << 20) -> bytes:
    """A small file of a bundle (JSON), whole."""
    with source.open(name) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ImageError(f"{name} is too large")
    return data


def blob_name(digest: Digest) -> str:
    """Where a blob lives inside a layout: ``blobs/<alg>/<hex>``."""
    return f"blobs/{digest.algorithm}/{digest.hex}"


# ---- reading a layout ----------------------------------------------------------------------------------


class SourceImage:
    """An image whose blobs are files ``blobs/<alg>/<hex>`` of a FileSource."""

    def __init__(self, source: FileSource, manifest: bytes, config_name: str | None = None) -> None:
        self._source = source
        self._manifest = manifest
        config = image_manifest(self).config
        self._config = read_source_bytes(source, config_name or blob_name(config.digest))

    def raw_manifest(self) -> bytes:
        """The manifest bytes."""
        return self._manifest

    def raw_config(self) -> bytes:
        """The config bytes."""
        return self._config

    def open_blob(self, descriptor: Descriptor) -> BinaryIO:
        """A blob of the bundle (checked against its digest when copied into a store)."""
        return self._source.open(blob_name(descriptor.digest))


@record
class LayoutEntry:
    """One ``index.json`` entry: its descriptor and the image name it carries, if any."""

    descriptor: Descriptor
    name: str | None
    tag: str | None


def _entry_name(desc: Descriptor) -> tuple[str | None, str | None]:
    """(full canonical name, bare tag) from an index entry's annotations."""
    full = desc.annotations.get(CONTAINERD_NAME)
    ref = desc.annotations.get(REF_NAME)
    for candidate in (full, ref):
        if candidate and ("/" in candidate or ":" in candidate):
            with contextlib.suppress(ImageError):
                return str(parse_reference(candidate)), None
    return None, ref or None


def read_index(source: FileSource) -> list[LayoutEntry]:
    """The entries of a layout's ``index.json`` (ImageError when it is not an OCI layout)."""
    if not source.exists("index.json"):
        raise ImageError("not an OCI image layout: index.json is missing")
    if source.exists(LAYOUT_FILE):
        try:
            version = json.loads(read_source_bytes(source, LAYOUT_FILE)).get("imageLayoutVersion")
        except (ValueError, AttributeError):
            version = None
        if version != "1.0.0":
            raise ImageError(f"unsupported OCI layout version {version!r}")
    index = Index.from_bytes(read_source_bytes(source, "index.json"))
    return [LayoutEntry(d, *_entry_name(d)) for d in index.manifests]


@record
class LoadedImage:
    """An image a load put into the store: its manifest (or index) digest and the name it got."""

    digest: Digest
    name: str | None


def copy_graph(source: FileSource, store: Store, root: Descriptor, *, lease: Lease | None = None) -> None:
    """Copy ``root`` and everything it points at from a bundle into ``store``, verifying each blob.

    Children of an index that the bundle lacks (a partial multi-platform copy) are skipped.
    """
    todo = [root]
    seen: set[Digest] = set()
    while todo:
        desc = todo.pop()
        if desc.digest in seen:
            continue
        seen.add(desc.digest)
        structural = MediaType.is_manifest(desc.media_type) or MediaType.is_index(desc.media_type)
        name = blob_name(desc.digest)
        if not source.exists(name):
            if desc is not root and MediaType.is_manifest(desc.media_type):
                continue
            raise ImageError(f"the image is incomplete: blob {desc.digest} ({desc.media_type}) is missing")
        if structural:
            raw = read_source_bytes(source, name)
            store.put_bytes(raw, desc.digest, lease=lease)
            if len(raw) != desc.size:
                raise ImageError(f"blob {desc.digest} is {len(raw)} bytes, expected {desc.size}")
            todo.extend(child_descriptors(raw))
        else:
            with source.open(name) as fh:
                store.put_stream(fh, desc.digest, size=desc.size, lease=lease)


def load_layout(store: Store, path: Path, *, name: str | None = None) -> list[LoadedImage]:
    """Load every image of an OCI layout (directory or tar) into ``store`` and name it.

    Entries carrying a full name get it. ``name`` is for entries without one: it names the image
    when the layout holds exactly one, else an entry with only a tag gets ``name``'s repository
    with that tag.
    """
    source = open_source(path)
    try:
        return load_layout_source(store, source, name=name)
    finally:
        source.close()


def load_layout_source(store: Store, source: FileSource, *, name: str | None = None) -> list[LoadedImage]:
    """``load_layout`` for an already opened bundle."""
    entries = read_index(source)
    if not entries:
        raise ImageError("the OCI layout holds no images")
    out: list[LoadedImage] = []
    with store.lease() as lease:
        for entry in entries:
            copy_graph(source, store, entry.descriptor, lease=lease)
            ref = entry.name
            if ref is None and name is not None:
                given = parse_reference(name)
                if len(entries) == 1:
                    ref = str(given)
                elif entry.tag:
                    ref = str(given.with_tag(entry.tag))
            if ref is not None:
                store.set_ref(ref, entry.descriptor.digest)
            out.append(LoadedImage(entry.descriptor.digest, ref))
    return out


def layout_images(source: FileSource) -> Iterator[tuple[LayoutEntry, Image]]:
    """The layout's entries that are image manifests, as images (indexes are skipped)."""
    for entry in read_index(source):
        if MediaType.is_manifest(entry.descriptor.media_type):
            yield entry, SourceImage(source, read_source_bytes(source, blob_name(entry.descriptor.digest)))


# ---- writing -------------------------------------------------------------------------------------------


class BundleWriter:
    """Writes files into a directory or a deterministic tar, each blob once."""

    def __init__(self, dest: Path, *, as_tar: bool, fileobj: BinaryIO | None = None) -> None:
        """A writer into the directory ``dest``, or with ``as_tar`` a tar at ``dest`` (or into
        ``fileobj``, which may be a pipe: then the tar is streamed)."""
        self.dest = dest
        self.as_tar = as_tar
        self._written: set[str] = set()
        self._tar: tarfile.TarFile | None = None
        if as_tar and fileobj is not None and fileobj.seekable():
            self._tar = tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        elif as_tar and fileobj is not None:  # a pipe: streamed (the same bytes, written in order)
            self._tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        elif as_tar:
            self._tar = tarfile.open(dest, "w", format=tarfile.PAX_FORMAT)  # noqa: SIM115 - closed in close
        else:
            dest.mkdir(parents=True, exist_ok=True)

    def _info(self, name: str, size: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size = size
        info.type = kind
        info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def _dirs(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i]) + "/"
            if d not in self._written:
                self._written.add(d)
                if self._tar is not None:
                    self._tar.addfile(self._info(d, 0, tarfile.DIRTYPE))
                else:
                    (self.dest / d).mkdir(exist_ok=True)

    def has(self, name: str) -> bool:
        """Whether ``name`` was written already."""
        return name in self._written

    def add_bytes(self, name: str, data: bytes) -> None:
        """Write a small file (replacing it in a directory; once in a tar)."""
        self.add_stream(name, io.BytesIO(data), len(data))

    def add_stream(self, name: str, fh: BinaryIO, size: int) -> None:
        """Write a file of known size from a stream; a second write of the same name is skipped."""
        if name in self._written:
            return
        self._dirs(name)
        self._written.add(name)
        if self._tar is not None:
            self._tar.addfile(self._info(name, size), _Exact(fh, size, name))
            return
        with atomic_writer(self.dest / name, durable=False) as out:
            copied = _copy(fh, out)
            if copied != size:  # raised inside: the temp file goes, the destination stays as it was
                raise ImageError(f"{name}: expected {size} bytes, got {copied}")

    def close(self) -> None:
        """Finish the tar."""
        if self._tar is not None:
            self._tar.close()


def _copy(src: BinaryIO, dst: BinaryIO) -> int:
    n = 0
    while chunk := src.read(_CHUNK):
        dst.write(chunk)
        n += len(chunk)
    return n


class _Exact(io.RawIOBase):
    """Reads exactly ``size`` bytes from ``fh`` (a tar entry must match its header), else ImageError."""

    def __init__(self, fh: BinaryIO, size: int, name: str) -> None:
        super().__init__()
        self._fh, self._left, self._name = fh, size, name
        self._ended = False

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            n = self._left
        data = self._fh.read(min(n, self._left)) if self._left else b""
        self._left -= len(data)
        if not data and self._left:
            raise ImageError(f"{self._name}: content ended {self._left} bytes early")
        if not self._left and not self._ended:
            # Read on to end of file: a verifying reader (the store's) checks the digest there, and
            # content longer than its descriptor says is caught.
            self._ended = True
            if self._fh.read(1):
                raise ImageError(f"{self._name}: content is longer than its descriptor says")
        return data


def write_image_blobs(writer: BundleWriter, img: Image) -> None:
    """Write an image's layers, config and manifest as ``blobs/<alg>/<hex>`` files."""
    manifest = image_manifest(img)
    for layer in manifest.layers:
        name = blob_name(layer.digest)
        if not writer.has(name):
            with img.open_blob(layer) as fh:
                writer.add_stream(name, fh, layer.size)
    writer.add_bytes(blob_name(manifest.config.digest), img.raw_config())
    writer.add_bytes(blob_name(Digest.of(img.raw_manifest())), img.raw_manifest())


def index_entry(img: Image, name: str | None) -> Descriptor:
    """The ``index.json`` descriptor for an image, annotated with its full name and its tag."""
    annotations: dict[str, str] = {}
    if name is not None:
        ref = parse_reference(name)
        annotations[CONTAINERD_NAME] = str(ref)
        if ref.tag:
            annotations[REF_NAME] = ref.tag
    return manifest_descriptor(img, annotations=annotations)


def write_layout_files(writer: BundleWriter, images: Sequence[tuple[str | None, Image]]) -> None:
    """Blobs, ``oci-layout`` and ``index.json`` for ``images`` (name, image) into ``writer``."""
    entries: list[Descriptor] = []
    for name, img in images:
        write_image_blobs(writer, img)
        entries.append(index_entry(img, name))
    writer.add_bytes(LAYOUT_FILE, LAYOUT_VERSION)
    writer.add_bytes("index.json", Index(manifests=tuple(entries)).to_bytes())


def write_layout(dest: Path, images: Sequence[tuple[str | None, Image]], *, as_tar: bool = False) -> None:
    """Write ``images`` as an OCI layout directory (merging into an existing one's blobs, replacing
    its index.json) or, with ``as_tar``, as a tar file at ``dest``."""
    if not as_tar:
        if dest.exists() and not dest.is_dir():
            raise ImageError(f"{dest} exists and is not a directory")
        write_layout_files(BundleWriter(dest, as_tar=False), images)
        return
    # A tar file appears whole or not at all; a device or a pipe (/dev/stdout) is written through.
    with atomic_writer(dest, durable=False) as out:
        writer = BundleWriter(dest, as_tar=True, fileobj=out)
        try:
            write_layout_files(writer, images)
        finally:
            writer.close()


def read_layout_index(root: Path) -> list[Descriptor]:
    """The entries of the layout directory ``root``'s ``index.json``; none when it has none yet.

    ImageError when the file is there but not an OCI image index.
    """
    try:
        raw = (root / "index.json").read_bytes()
    except FileNotFoundError:
        return []
    try:
        return list(Index.from_bytes(raw).manifests)
    except ImageError as err:
        raise ImageError(f"{root}/index.json is not an OCI image index: {err.message}") from None


BlobOpener = Callable[[], BinaryIO]


def add_to_layout(
    dest: Path,
    manifest: Descriptor,
    raw_manifest: bytes,
    blobs: Sequence[tuple[Descriptor, BlobOpener]],
    *,
    tag: str,
) -> None:
    """Add one manifest to the OCI layout directory ``dest`` (made when missing) under ``tag``.

    Writes the blobs the manifest names (``blobs``: each descriptor and how to open its content;
    one already there at its size is kept, blobs being content-addressed, so a directory kept
    between CI runs is not written again), the manifest, ``oci-layout``, and ``index.json`` with
    ``manifest`` annotated with ``tag`` in place of the entry that had that tag (other entries stay).
    ImageError when ``dest`` is not a directory or its index.json is not an index; OSError when it
    cannot be written.
    """
    if dest.exists() and not dest.is_dir():
        raise ImageError(f"{dest} exists and is not a directory")
    entries = [d for d in read_layout_index(dest) if d.annotations.get(REF_NAME) != tag]
    writer = BundleWriter(dest, as_tar=False)
    for desc, open_blob in blobs:
        name = blob_name(desc.digest)
        path = dest / name
        if writer.has(name) or (path.is_file() and path.stat().st_size == desc.size):
            continue
        with open_blob() as fh:
            writer.add_stream(name, fh, desc.size)
    writer.add_bytes(blob_name(manifest.digest), raw_manifest)
    writer.add_bytes(LAYOUT_FILE, LAYOUT_VERSION)
    entries.append(replace(manifest, annotations={**manifest.annotations, REF_NAME: tag}))
    writer.add_bytes("index.json", Index(manifests=tuple(entries)).to_bytes())
