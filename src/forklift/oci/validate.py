"""Every invariant of an image, checked in one place (tests, importers and ``inspect --check``)."""

from __future__ import annotations

import hashlib

from forklift.errors import ImageError
from forklift.oci.compression import open_uncompressed
from forklift.oci.image import Image
from forklift.oci.model import Descriptor, Digest, ImageConfig, Manifest, MediaType

_CHUNK = 1 << 20


def problems(img: Image, *, check_blobs: bool = False, check_diff_ids: bool = False) -> list[str]:
    """Everything wrong with ``img``, as sentences; empty when it is sound.

    Always: the manifest and config parse; the config descriptor matches the config bytes; media
    types are of one family and of the right kind; diff_ids, non-empty history entries and layers
    agree in number; os and architecture are set. ``check_blobs`` reads every layer and checks its
    digest and size; ``check_diff_ids`` also decompresses it and checks the diff_id.
    """
    out: list[str] = []
    try:
        manifest = Manifest.from_bytes(img.raw_manifest())
    except ImageError as err:
        return [f"manifest: {err.message}"]
    raw_config = img.raw_config()
    try:
        config = ImageConfig.from_bytes(raw_config)
    except ImageError as err:
        return [f"config: {err.message}"]
    if manifest.config.digest != Digest.of(raw_config, manifest.config.digest.algorithm):
        out.append(f"config digest is {Digest.of(raw_config)} but the manifest says {manifest.config.digest}")
    if manifest.config.size != len(raw_config):
        out.append(f"config is {len(raw_config)} bytes but the manifest says {manifest.config.size}")
    docker = manifest.is_docker
    if not MediaType.is_config(manifest.config.media_type):
        out.append(f"config media type {manifest.config.media_type} is not an image config type")
    elif MediaType.is_docker(manifest.config.media_type) != docker:
        out.append(
            f"config media type {manifest.config.media_type} mixes families with {manifest.media_type}"
        )
    for i, layer in enumerate(manifest.layers):
        if not MediaType.is_layer(layer.media_type):
            out.append(f"layer {i} has media type {layer.media_type}, not a layer type")
        elif not docker and MediaType.is_docker(layer.media_type):
            out.append(f"layer {i} has Docker media type {layer.media_type} in an OCI manifest")
    if len(config.diff_ids) != len(manifest.layers):
        out.append(f"config lists {len(config.diff_ids)} diff_ids for {len(manifest.layers)} layers")
    if config.history:
        with_layer = sum(1 for h in config.history if not h.empty_layer)
        if with_layer != len(manifest.layers):
            out.append(f"history has {with_layer} entries with a layer for {len(manifest.layers)} layers")
    if not config.os or not config.architecture:
        out.append("config does not name its os and architecture")
    if check_blobs or check_diff_ids:
        for i, (layer, diff_id) in enumerate(zip(manifest.layers, config.diff_ids)):
            out.extend(_check_layer(img, i, layer, diff_id if check_diff_ids else None))
    return out


def _check_layer(img: Image, i: int, layer: Descriptor, diff_id: Digest | None) -> list[str]:
    try:
        with img.open_blob(layer) as fh:
            data_hash = layer.digest.hasher()
            size = 0
            while chunk := fh.read(_CHUNK):
                data_hash.update(chunk)
                size += len(chunk)
        if data_hash.hexdigest() != layer.digest.hex or size != layer.size:
            return [f"layer {i} ({layer.digest}) does not match its digest or size"]
        if diff_id is not None:
            with img.open_blob(layer) as fh, open_uncompressed(fh) as raw:
                h = hashlib.new(diff_id.algorithm)
                while chunk := raw.read(_CHUNK):
                    h.update(chunk)
            if h.hexdigest() != diff_id.hex:
                return [f"layer {i} ({layer.digest}) uncompresses to sha256:{h.hexdigest()}, not {diff_id}"]
    except ImageError as err:
        return [f"layer {i} ({layer.digest}): {err.message}"]
    return []


def validate(img: Image, *, check_blobs: bool = False, check_diff_ids: bool = False) -> None:
    """Raise ImageError listing every problem of ``img`` (see ``problems``)."""
    found = problems(img, check_blobs=check_blobs, check_diff_ids=check_diff_ids)
    if found:
        raise ImageError("invalid image: " + "; ".join(found))
