"""Compressed forms of uncompressed layers: made once, reused, and the image stays valid."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from forklift.errors import ImageError
from forklift.oci import convert
from forklift.oci.convert import compress_layers, compressed_layer
from forklift.oci.image import image_config, image_id, image_layers, load_image, write_image
from forklift.oci.model import Descriptor, Digest, MediaType
from forklift.oci.mutate import EMPTY, append_layer, with_media_types
from forklift.oci.store import Store
from forklift.oci.validate import problems

from .test_image_mutate import make_layer


def _uncompressed_image(store: Store) -> Digest:
    tar, _ = make_layer({"a.txt": b"a" * 5000, "b.txt": b"b" * 3000})
    d = store.put_bytes(tar)
    img = append_layer(EMPTY, Descriptor(MediaType.OCI_LAYER, d, len(tar)), d)
    return write_image(store, img, name="docker.io/library/plain:1")


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_compress_layers_once_and_reuse(
    store_root: Path, compression: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(store_root)
    _uncompressed_image(store)
    img = load_image(store, "docker.io/library/plain:1")
    out = compress_layers(store, img, compression)  # type: ignore[arg-type]
    [layer] = image_layers(out)
    assert layer.media_type == MediaType.layer(compression) and layer.size < image_layers(img)[0].size
    assert image_id(out) == image_id(img) and out.raw_config() == img.raw_config()
    assert problems(out, check_diff_ids=True) == []
    assert store.find_compressed(image_config(img).diff_ids[0], compression) == (layer.digest, layer.size)
    with monkeypatch.context() as m:  # the second time nothing is compressed: the form is found
        m.setattr(convert, "compress_file", lambda *a, **k: pytest.fail("compressed again"))
        again = compress_layers(store, img, compression)  # type: ignore[arg-type]
    assert again.raw_manifest() == out.raw_manifest()
    assert compress_layers(store, img, "none") is img


def test_docker_family_and_already_compressed(store_root: Path) -> None:
    store = Store(store_root)
    _uncompressed_image(store)
    img = load_image(store, "docker.io/library/plain:1")
    docker = load_image(store, write_image(store, with_media_types(img, docker=True)))
    out = compress_layers(store, docker)
    assert image_layers(out)[0].media_type == MediaType.DOCKER_LAYER_GZIP
    stored = load_image(store, write_image(store, out))
    assert compress_layers(store, stored) is stored
    with pytest.raises(ImageError, match="already compressed"):
        compressed_layer(store, image_layers(stored)[0], image_config(stored).diff_ids[0], "gzip")


def test_wrong_diff_id_is_refused(store_root: Path) -> None:
    store = Store(store_root)
    d = store.put_stream(io.BytesIO(b"not the layer you think"))[0]
    with pytest.raises(ImageError, match="diff_id"):
        compressed_layer(store, Descriptor(MediaType.OCI_LAYER, d, 23), Digest.of(b"x"), "gzip")


def test_prune_drops_compressed_forms_and_their_records(store_root: Path) -> None:
    store = Store(store_root)
    _uncompressed_image(store)
    img = load_image(store, "docker.io/library/plain:1")
    [layer] = image_layers(compress_layers(store, img))
    diff_id = image_config(img).diff_ids[0]
    assert store.find_compressed(diff_id, "gzip") is not None
    store.prune()  # nothing names the compressed image: its layer goes, and the record with it
    assert not store.has(layer.digest) and store.find_compressed(diff_id, "gzip") is None
    assert list((store_root / "compressed" / "gzip").iterdir()) == []
