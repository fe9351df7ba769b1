"""Images converted for leaving the machine: uncompressed layers compressed.

Inside the store a layer may stay uncompressed (a rebuild then pays no compression); its gzip or
zstd form is made once, when an export or push first needs it, and found again by diff_id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import BinaryIO

from forklift.errors import ImageError
from forklift.oci.compression import Compression, compress_file
from forklift.oci.image import Image, StoreImage, image_config, image_manifest
from forklift.oci.model import Descriptor, Digest, MediaType
from forklift.oci.mutate import with_layers
from forklift.oci.store import Lease, Store


def compressed_layer(
    store: Store, layer: Descriptor, diff_id: Digest, compression: Compression, *, lease: Lease | None = None
) -> Descriptor:
    """The ``compression`` form of an uncompressed stored layer, made now or found from before."""
    if MediaType.compression(layer.media_type) != "none":
        raise ImageError(f"layer {layer.digest} is already compressed")
    docker = MediaType.is_docker(layer.media_type)
    media_type = MediaType.layer(compression, docker=docker)
    found = store.find_compressed(diff_id, compression)
    if found is not None:
        if lease is not None:
            lease.add(found[0])
        return replace(layer, media_type=media_type, digest=found[0], size=found[1])
    with store.open_blob(layer.digest, size=layer.size) as src, store.writer() as out:
        result = compress_file(src, out, compression)
        if result.diff_id != str(diff_id):
            raise ImageError(f"layer {layer.digest} does not match its diff_id {diff_id}")
        digest, size = out.commit(Digest.parse(result.digest), lease=lease)
    store.record_compressed(diff_id, compression, digest, size)
    return replace(layer, media_type=media_type, digest=digest, size=size)


def compress_layers(
    store: Store, img: StoreImage, compression: Compression = "gzip", *, lease: Lease | None = None
) -> Image:
    """``img`` with each uncompressed layer replaced by its ``compression`` form (already compressed
    layers are kept as they are). Returns ``img`` itself when nothing needed compressing."""
    if compression == "none":
        return img
    manifest = image_manifest(img)
    diff_ids = image_config(img).diff_ids
    layers = tuple(
        compressed_layer(store, layer, diff_id, compression, lease=lease)
        if MediaType.compression(layer.media_type) == "none"
        else layer
        for layer, diff_id in zip(manifest.layers, diff_ids)
    )
    if layers == manifest.layers:
        return img
    openers = {d.digest: _opener(store, d) for d in layers}
    return with_layers(img, layers, openers=openers)


def _opener(store: Store, desc: Descriptor) -> Callable[[], BinaryIO]:
    return lambda: store.open_blob(desc.digest, size=desc.size)
