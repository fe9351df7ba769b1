"""Changes to images as functions: each takes an image and returns a new one; nothing is edited.

``EMPTY`` is ``FROM scratch``: no layers, the host platform, an empty run config. The new images
share their base's layers (blob reads go through to the base) and hold only their new manifest and
config bytes, so a stage graph can derive many images from one base safely and cheaply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import BinaryIO

from forklift.errors import ImageError
from forklift.oci.image import Image, MemoryImage, image_config, image_manifest
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


def _build(
    base: Image | None,
    manifest: Manifest,
    config: ImageConfig,
    blobs: Mapping[Digest, Callable[[], BinaryIO]] | None = None,
) -> Image:
    raw_config = config.to_bytes()
    config_type = MediaType.DOCKER_CONFIG if manifest.is_docker else MediaType.OCI_CONFIG
    manifest = replace(manifest, config=Descriptor.of(config_type, raw_config))
    return MemoryImage(manifest.to_bytes(), raw_config, base=base, blobs=blobs)


def empty(platform: Platform | None = None) -> Image:
    """A scratch image (no layers, no history) for ``platform`` (default: this machine's)."""
    plat = platform or Platform.host()
    config = ImageConfig(
        architecture=plat.architecture,
        os=plat.os,
        variant=plat.variant,
        os_version=plat.os_version,
        os_features=plat.os_features,
    )
    manifest = Manifest(config=Descriptor.of(MediaType.OCI_CONFIG, b"{}"))
    return _build(None, manifest, config)


EMPTY: Image = empty()
"""``FROM scratch`` for the host platform."""


def append_layer(
    img: Image,
    layer: Descriptor,
    diff_id: Digest,
    history: HistoryEntry | None = None,
    *,
    opener: Callable[[], BinaryIO] | None = None,
) -> Image:
    """``img`` plus one layer on top, with its diff_id and a history entry (``empty_layer`` False).

    ``opener`` opens the new layer's blob; without it reads go to ``img``'s own ``open_blob`` (right
    when ``img`` lives in the store the layer was put into). In a Docker-typed image the layer's
    media type is converted to the Docker family.
    """
    manifest = image_manifest(img)
    config = image_config(img)
    if manifest.is_docker:
        layer = replace(layer, media_type=MediaType.to_docker(layer.media_type))
    entry = replace(history or HistoryEntry(), empty_layer=False)
    new_config = replace(config, diff_ids=(*config.diff_ids, diff_id), history=(*config.history, entry))
    new_manifest = replace(manifest, layers=(*manifest.layers, layer))
    return _build(img, new_manifest, new_config, {layer.digest: opener} if opener else None)


def with_config(img: Image, config: ContainerConfig) -> Image:
    """``img`` with its run config (Env, Cmd, User, ...) replaced; layers and history unchanged."""
    return _build(img, image_manifest(img), replace(image_config(img), config=config))


def with_image_config(img: Image, config: ImageConfig) -> Image:
    """``img`` with its whole config replaced (the caller keeps diff_ids matching the layers)."""
    return _build(img, image_manifest(img), config)


def with_history(img: Image, entry: HistoryEntry) -> Image:
    """``img`` with a history entry for a step that made no layer (ENV, CMD, ...)."""
    config = image_config(img)
    return _build(
        img, image_manifest(img), replace(config, history=(*config.history, replace(entry, empty_layer=True)))
    )


def with_created(img: Image, created: str | None) -> Image:
    """``img`` with its ``created`` time (RFC 3339) replaced; None removes it (reproducible builds)."""
    return _build(img, image_manifest(img), replace(image_config(img), created=created))


def with_platform(img: Image, platform: Platform) -> Image:
    """``img`` declaring ``platform`` in its config."""
    config = replace(
        image_config(img),
        os=platform.os,
        architecture=platform.architecture,
        variant=platform.variant,
        os_version=platform.os_version,
        os_features=platform.os_features,
    )
    return _build(img, image_manifest(img), config)


def with_annotations(img: Image, annotations: Mapping[str, str]) -> Image:
    """``img`` with manifest annotations merged in (later keys win)."""
    manifest = image_manifest(img)
    merged = {**manifest.annotations, **annotations}
    return _build(img, replace(manifest, annotations=merged), image_config(img))


def with_media_types(img: Image, *, docker: bool) -> Image:
    """``img`` with Docker v2 schema 2 media types (``docker=True``) or OCI ones; blobs unchanged."""
    manifest = image_manifest(img)
    converted = manifest.to_docker() if docker else manifest.to_oci()
    if converted == manifest:
        return img
    return MemoryImage(converted.to_bytes(), img.raw_config(), base=img)


def with_layers(
    img: Image,
    layers: tuple[Descriptor, ...],
    *,
    openers: Mapping[Digest, Callable[[], BinaryIO]] | None = None,
) -> Image:
    """``img`` with its layer descriptors replaced by other encodings of the same layers (same
    diff_ids, e.g. compressed forms); ``openers`` open the new blobs (else ``img`` is asked)."""
    manifest = image_manifest(img)
    if len(layers) != len(manifest.layers):
        raise ImageError(f"{len(layers)} layers given for an image of {len(manifest.layers)}")
    # The config bytes are kept as they are: the image ID does not change.
    return MemoryImage(replace(manifest, layers=layers).to_bytes(), img.raw_config(), base=img, blobs=openers)
