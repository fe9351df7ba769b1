"""Images as values: derived helpers, mutate functions, validation and store round trips."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from forklift.errors import DigestMismatch, ImageError
from forklift.oci.compression import compress_file
from forklift.oci.image import (
    Image,
    MemoryImage,
    StoreImage,
    image_config,
    image_digest,
    image_id,
    image_layers,
    image_manifest,
    image_size,
    layer_for_diff_id,
    load_image,
    manifest_descriptor,
    open_image_blob,
    resolve,
    write_image,
)
from forklift.oci.model import (
    ContainerConfig,
    Descriptor,
    Digest,
    HistoryEntry,
    Index,
    Manifest,
    MediaType,
    Platform,
)
from forklift.oci.mutate import (
    EMPTY,
    append_layer,
    empty,
    with_annotations,
    with_config,
    with_created,
    with_history,
    with_image_config,
    with_media_types,
)
from forklift.oci.store import Store
from forklift.oci.validate import problems, validate


def make_layer(files: dict[str, bytes]) -> tuple[bytes, bytes]:
    """(uncompressed tar, gzip blob) with the given files."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    compress_file(io.BytesIO(raw.getvalue()), out, "gzip")
    return raw.getvalue(), out.getvalue()


def add_layer(store: Store, img: Image, files: dict[str, bytes], created_by: str) -> MemoryImage:
    tar, blob = make_layer(files)
    d = store.put_bytes(blob)
    out = append_layer(
        img,
        Descriptor(MediaType.OCI_LAYER_GZIP, d, len(blob)),
        Digest.of(tar),
        HistoryEntry(created_by=created_by),
        opener=lambda: store.open_blob(d),
    )
    assert isinstance(out, MemoryImage)
    return out


def test_empty_is_scratch() -> None:
    cfg = image_config(EMPTY)
    assert image_layers(EMPTY) == () and cfg.diff_ids == () and cfg.history == ()
    assert cfg.platform == Platform.host()
    validate(EMPTY)
    arm = empty(Platform.parse("linux/arm/v7"))
    assert image_config(arm).variant == "v7" and image_digest(arm) != image_digest(EMPTY)
    assert image_digest(empty()) == image_digest(EMPTY)  # deterministic


def test_append_layer_returns_new_value_and_keeps_base(store_root: Path) -> None:
    store = Store(store_root)
    base_digest = image_digest(EMPTY)
    one = add_layer(store, EMPTY, {"a": b"1"}, "COPY a /")
    two = add_layer(store, one, {"b": b"2"}, "RUN make b")
    assert image_digest(EMPTY) == base_digest and len(image_layers(one)) == 1
    assert [h.created_by for h in image_config(two).history] == ["COPY a /", "RUN make b"]
    assert len(image_config(two).diff_ids) == 2 and len(image_layers(two)) == 2
    assert image_manifest(two).config.digest == image_id(two)
    assert image_size(two) == image_manifest(two).config.size + sum(d.size for d in image_layers(two))
    first = image_layers(two)[0]
    with two.open_blob(first) as fh:  # the base's layer, read through the chain
        assert Digest.of(fh.read()) == first.digest
    assert layer_for_diff_id(two, image_config(two).diff_ids[1]) == image_layers(two)[1]
    with pytest.raises(ImageError):
        layer_for_diff_id(two, Digest.of(b"nope"))
    assert problems(two, check_diff_ids=True) == []


def test_config_only_changes_add_no_layer() -> None:
    img = with_config(EMPTY, ContainerConfig(env=("A=1",), cmd=("sh",)))
    img = with_history(img, HistoryEntry(created_by="ENV A=1"))
    img = with_created(img, "2024-01-01T00:00:00Z")
    assert image_layers(img) == () and image_config(img).config.cmd == ("sh",)
    assert image_config(img).history[0].empty_layer and image_config(img).created == "2024-01-01T00:00:00Z"
    validate(img)
    annotated = with_annotations(img, {"org.opencontainers.image.title": "x"})
    assert image_manifest(annotated).annotations == {"org.opencontainers.image.title": "x"}


def test_docker_media_types(store_root: Path) -> None:
    store = Store(store_root)
    one = add_layer(store, EMPTY, {"a": b"1"}, "COPY a /")
    docker = with_media_types(one, docker=True)
    m = image_manifest(docker)
    assert m.media_type == MediaType.DOCKER_MANIFEST and m.config.media_type == MediaType.DOCKER_CONFIG
    two = add_layer(store, docker, {"b": b"2"}, "RUN b")
    assert [d.media_type for d in image_layers(two)] == [MediaType.DOCKER_LAYER_GZIP] * 2
    assert image_manifest(two).config.media_type == MediaType.DOCKER_CONFIG
    assert problems(two, check_blobs=True) == []
    assert with_media_types(one, docker=False) is one


def test_validate_finds_every_broken_invariant(store_root: Path) -> None:
    store = Store(store_root)
    one = add_layer(store, EMPTY, {"a": b"1"}, "COPY a /")
    cfg = image_config(one)
    bad = with_image_config(one, cfg.__class__(architecture="", os="", diff_ids=(), history=cfg.history))
    found = problems(bad)
    assert any("0 diff_ids for 1 layers" in p for p in found)
    assert any("os and architecture" in p for p in found)
    wrong_diff = with_image_config(
        one, cfg.__class__(architecture="amd64", os="linux", diff_ids=(Digest.of(b"x"),))
    )
    assert problems(wrong_diff) == []
    assert any("uncompresses to" in p for p in problems(wrong_diff, check_diff_ids=True))
    m = image_manifest(one)
    mixed = Manifest(
        config=m.config, layers=(Descriptor(MediaType.DOCKER_LAYER_GZIP, m.layers[0].digest, 3),)
    )
    img = MemoryImage(mixed.to_bytes(), one.raw_config(), base=one)
    found = problems(img, check_blobs=True)
    assert any("Docker media type" in p for p in found)
    assert any("does not match its digest or size" in p for p in found)
    lying = MemoryImage(m.to_bytes(), one.raw_config() + b" ", base=one)
    assert any("config is" in p for p in problems(lying))
    with pytest.raises(ImageError, match="invalid image"):
        validate(lying)
    assert problems(MemoryImage(b"{}", b"{}")) != []


def test_write_and_load_from_store(store_root: Path) -> None:
    store = Store(store_root)
    img = add_layer(store, EMPTY, {"a": b"1"}, "COPY a /")
    other = Store(store_root.parent / "other")
    digest = write_image(other, img, name="docker.io/library/t:1")
    assert digest == image_digest(img)
    loaded = load_image(other, "docker.io/library/t:1")
    assert isinstance(loaded, StoreImage)
    assert loaded.raw_manifest() == img.raw_manifest() and loaded.raw_config() == img.raw_config()
    assert problems(loaded, check_diff_ids=True) == []
    assert load_image(other, str(digest)).digest == digest
    with pytest.raises(ImageError, match="no such image"):
        load_image(other, "docker.io/library/absent:1")
    assert write_image(other, img) == digest  # idempotent


def test_resolve_picks_platform_from_index(store_root: Path) -> None:
    store = Store(store_root)
    amd = with_created(empty(Platform.parse("linux/amd64")), "1")
    arm = with_created(empty(Platform.parse("linux/arm64")), "2")
    for i in (amd, arm):
        write_image(store, i)
    index = Index(
        manifests=(
            manifest_descriptor(amd, platform=Platform.parse("linux/amd64")),
            manifest_descriptor(arm, platform=Platform.parse("linux/arm64")),
        )
    )
    store.set_ref("multi:1", store.put_bytes(index.to_bytes()))
    assert resolve(store, "multi:1", platform=Platform.parse("linux/arm64")) == image_digest(arm)
    assert resolve(store, "multi:1", platform=Platform.parse("linux/amd64")) == image_digest(amd)
    with pytest.raises(ImageError, match="no image for platform linux/s390x"):
        resolve(store, "multi:1", platform=Platform.parse("linux/s390x"))


def test_store_image_detects_corruption(store_root: Path) -> None:
    store = Store(store_root)
    img = add_layer(store, EMPTY, {"a": b"1"}, "COPY a /")
    digest = write_image(store, img)
    cfg_path = store.blob_path(image_id(img))
    cfg_path.write_bytes(json.dumps({"os": "evil"}).encode().ljust(cfg_path.stat().st_size))
    with pytest.raises(DigestMismatch):
        StoreImage(store, digest)


def test_open_image_blob_serves_config_manifest_and_layers(store_root: Path) -> None:
    store = Store(store_root)
    img = add_layer(store, EMPTY, {"a": b"1"}, "COPY a /")
    m = image_manifest(img)
    assert open_image_blob(img, m.config).read() == img.raw_config()
    assert open_image_blob(img, manifest_descriptor(img)).read() == img.raw_manifest()
    assert Digest.of(open_image_blob(img, m.layers[0]).read()) == m.layers[0].digest
