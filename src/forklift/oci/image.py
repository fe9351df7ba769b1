"""What an image is to forklift: raw manifest bytes, raw config bytes, and a way to open blobs.

Readers (store, OCI layout, docker-archive, registry) implement only the ``Image`` protocol's three
methods; everything else (digests, parsed manifest and config, layers, sizes) is derived here, once,
by the functions below. Images are values: nothing changes one in place (see ``mutate``).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import BinaryIO, Protocol, runtime_checkable

from forklift.errors import ImageError
from forklift.oci.model import (
    Descriptor,
    Digest,
    HistoryEntry,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    parse_manifest_or_index,
)
from forklift.oci.store import Lease, Store


@runtime_checkable
class Image(Protocol):
    """The minimum an image source provides."""

    def raw_manifest(self) -> bytes:
        """The manifest exactly as stored (its sha256 is the image digest)."""
        ...

    def raw_config(self) -> bytes:
        """The config blob exactly as stored (its sha256 is the image ID)."""
        ...

    def open_blob(self, descriptor: Descriptor) -> BinaryIO:
        """A stream of the blob ``descriptor`` names (a layer, as stored: usually compressed)."""
        ...


# ---- derived, parsed once per distinct byte string ---------------------------------------------------


@lru_cache(maxsize=512)
def _manifest(raw: bytes) -> Manifest:
    return Manifest.from_bytes(raw)


@lru_cache(maxsize=512)
def _config(raw: bytes) -> ImageConfig:
    return ImageConfig.from_bytes(raw)


def image_manifest(img: Image) -> Manifest:
    """The parsed manifest."""
    return _manifest(img.raw_manifest())


def image_config(img: Image) -> ImageConfig:
    """The parsed config."""
    return _config(img.raw_config())


def image_digest(img: Image) -> Digest:
    """The manifest digest: what a registry and ``name@sha256:...`` identify the image by."""
    return Digest.of(img.raw_manifest())


def image_id(img: Image) -> Digest:
    """The config digest: the image ID ``docker images`` shows."""
    return Digest.of(img.raw_config())


def manifest_descriptor(
    img: Image, *, annotations: Mapping[str, str] | None = None, platform: Platform | None = None
) -> Descriptor:
    """A descriptor of the manifest (its own media type, digest and size), for an index."""
    raw = img.raw_manifest()
    return Descriptor(
        image_manifest(img).media_type,
        Digest.of(raw),
        len(raw),
        annotations=dict(annotations or {}),
        platform=platform,
    )


def image_layers(img: Image) -> tuple[Descriptor, ...]:
    """The layer descriptors, base first."""
    return image_manifest(img).layers


def image_size(img: Image) -> int:
    """Bytes of config plus layers as stored (compressed), like a registry's image size."""
    m = image_manifest(img)
    return m.config.size + sum(d.size for d in m.layers)


def layer_for_diff_id(img: Image, diff_id: Digest) -> Descriptor:
    """The layer descriptor whose uncompressed digest is ``diff_id``."""
    for desc, did in zip(image_layers(img), image_config(img).diff_ids):
        if did == diff_id:
            return desc
    raise ImageError(f"image has no layer with diff_id {diff_id}")


def open_image_blob(img: Image, descriptor: Descriptor) -> BinaryIO:
    """Any blob of the image by descriptor: the config and manifest from their bytes, layers from
    ``img.open_blob`` (for code that walks every descriptor, such as a push)."""
    if descriptor.digest == Digest.of(img.raw_config()):
        return io.BytesIO(img.raw_config())
    if descriptor.digest == image_digest(img):
        return io.BytesIO(img.raw_manifest())
    return img.open_blob(descriptor)


def history_with_layers(img: Image) -> list[tuple[HistoryEntry, Descriptor | None]]:
    """Each history entry with the layer it made (None for empty_layer entries), oldest first.

    When the config has no history (allowed by OCI), one synthetic entry per layer is returned.
    """
    cfg = image_config(img)
    layers = list(image_manifest(img).layers)
    if not cfg.history:
        return [(HistoryEntry(), d) for d in layers]
    out: list[tuple[HistoryEntry, Descriptor | None]] = []
    for entry in cfg.history:
        out.append((entry, None if entry.empty_layer or not layers else layers.pop(0)))
    return out


# ---- concrete images --------------------------------------------------------------------------------


class StoreImage:
    """An image whose manifest, config and layers are in a Store (content verified on read)."""

    def __init__(self, store: Store, digest: Digest) -> None:
        self.store = store
        self.digest = digest
        self._manifest = store.read_blob(digest)
        manifest = _manifest(self._manifest)
        self._config = store.read_blob(manifest.config.digest, size=manifest.config.size)

    def raw_manifest(self) -> bytes:
        """The manifest bytes."""
        return self._manifest

    def raw_config(self) -> bytes:
        """The config bytes."""
        return self._config

    def open_blob(self, descriptor: Descriptor) -> BinaryIO:
        """A verifying stream of a stored blob."""
        return self.store.open_blob(descriptor.digest, size=descriptor.size)


class MemoryImage:
    """An image held as bytes, with blobs from ``blobs`` (openers by digest), then ``base``.

    What ``mutate`` returns: the new manifest and config in memory, layers shared with the base.
    """

    def __init__(
        self,
        manifest: bytes,
        config: bytes,
        *,
        base: Image | None = None,
        blobs: Mapping[Digest, Callable[[], BinaryIO]] | None = None,
    ) -> None:
        self._manifest = manifest
        self._config = config
        self._base = base
        self._blobs = dict(blobs or {})

    def raw_manifest(self) -> bytes:
        """The manifest bytes."""
        return self._manifest

    def raw_config(self) -> bytes:
        """The config bytes."""
        return self._config

    def open_blob(self, descriptor: Descriptor) -> BinaryIO:
        """A blob from this image's own openers, else from its base."""
        opener = self._blobs.get(descriptor.digest)
        if opener is not None:
            return opener()
        if self._base is not None:
            return self._base.open_blob(descriptor)
        raise ImageError(f"blob {descriptor.digest} is not available for this image")


def resolve(store: Store, name_or_digest: str | Digest, *, platform: Platform | None = None) -> Digest:
    """The manifest digest for a stored reference name (canonical form) or a digest.

    A name pointing at an index resolves to the manifest for ``platform`` (default: this machine's).
    """
    if isinstance(name_or_digest, Digest):
        digest = name_or_digest
    elif name_or_digest.startswith(("sha256:", "sha512:")):
        digest = Digest.parse(name_or_digest)
    else:
        found = store.get_ref(name_or_digest)
        if found is None:
            raise ImageError(f"no such image: {name_or_digest}")
        digest = found
    if not store.has(digest):
        raise ImageError(f"no such image: {name_or_digest}")
    for _ in range(4):  # an index of indexes is legal; a deeper chain is surely a mistake
        parsed = parse_manifest_or_index(store.read_blob(digest))
        if isinstance(parsed, Manifest):
            return digest
        digest = _select(parsed, platform or Platform.host()).digest
        if not store.has(digest):
            raise ImageError(f"the image for {platform or Platform.host()} is not in the store ({digest})")
    raise ImageError(f"{name_or_digest}: indexes nested too deeply")


def _select(index: Index, platform: Platform) -> Descriptor:
    plain = [d for d in index.manifests if d.platform is None]
    if len(index.manifests) == 1 and plain:
        return plain[0]  # a single-image index without platforms (skopeo, umoci write these)
    return index.select(platform)


def load_image(store: Store, name_or_digest: str | Digest, *, platform: Platform | None = None) -> StoreImage:
    """The stored image a canonical name or digest stands for (see ``resolve``)."""
    return StoreImage(store, resolve(store, name_or_digest, platform=platform))


def write_image(store: Store, img: Image, *, name: str | None = None, lease: Lease | None = None) -> Digest:
    """Copy an image's blobs, config and manifest into ``store`` (skipping what it has) and
    optionally name it; returns the manifest digest. Every blob is checked against its descriptor."""
    manifest = image_manifest(img)
    for desc in manifest.layers:
        if store.has(desc.digest):
            if lease is not None:
                lease.add(desc.digest)
            continue
        with img.open_blob(desc) as fh:
            store.put_stream(fh, desc.digest, size=desc.size, lease=lease)
    config = img.raw_config()
    if len(config) != manifest.config.size:
        raise ImageError(f"config is {len(config)} bytes but the manifest says {manifest.config.size}")
    store.put_bytes(config, manifest.config.digest, lease=lease)
    digest = store.put_bytes(img.raw_manifest(), lease=lease)
    if name is not None:
        store.set_ref(name, digest)
    return digest
