"""OCI layouts, docker-archives and rootfs import: written, read back, loaded byte-identically."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from forklift.errors import DigestMismatch, ImageError
from forklift.oci.archive import import_rootfs, load_archive, load_bundle, write_archive
from forklift.oci.image import (
    history_with_layers,
    image_config,
    image_digest,
    image_layers,
    load_image,
    write_image,
)
from forklift.oci.layout import (
    CONTAINERD_NAME,
    REF_NAME,
    DirSource,
    layout_images,
    load_layout,
    read_index,
    write_layout,
)
from forklift.oci.model import ContainerConfig, Digest, HistoryEntry, MediaType
from forklift.oci.mutate import EMPTY, with_config, with_history
from forklift.oci.store import Store
from forklift.oci.validate import problems

from .test_image_mutate import add_layer


def _two_images(store: Store) -> tuple[object, object]:
    base = add_layer(store, EMPTY, {"bin/a": b"a" * 100}, "COPY a /bin/")
    one = with_history(with_config(base, ContainerConfig(cmd=("a",))), HistoryEntry(created_by="CMD a"))
    two = add_layer(store, one, {"etc/b": b"b"}, "RUN b")
    write_image(store, one, name="docker.io/library/one:1")
    write_image(store, two, name="localhost:5000/two:latest")
    return one, two


@pytest.mark.parametrize("as_tar", [False, True])
def test_layout_round_trip_is_byte_identical(store_root: Path, tmp_path: Path, as_tar: bool) -> None:
    store = Store(store_root)
    _two_images(store)
    one = load_image(store, "docker.io/library/one:1")
    two = load_image(store, "localhost:5000/two:latest")
    dest = tmp_path / ("out.tar" if as_tar else "out")
    write_layout(dest, [("docker.io/library/one:1", one), ("localhost:5000/two:latest", two)], as_tar=as_tar)
    if as_tar:
        with tarfile.open(dest) as tar:
            names = tar.getnames()
            assert names.count(f"blobs/sha256/{image_layers(one)[0].digest.hex}") == 1  # shared layer once
            assert all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())
    else:
        entries = read_index(DirSource(dest))
        assert [e.name for e in entries] == ["docker.io/library/one:1", "localhost:5000/two:latest"]
        assert entries[0].descriptor.annotations == {
            CONTAINERD_NAME: "docker.io/library/one:1",
            REF_NAME: "1",
        }
        assert json.loads((dest / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    other = Store(tmp_path / "other")
    loaded = load_layout(other, dest)
    assert [(x.digest, x.name) for x in loaded] == [
        (one.digest, "docker.io/library/one:1"),
        (two.digest, "localhost:5000/two:latest"),
    ]
    again = load_image(other, "localhost:5000/two:latest")
    assert again.raw_manifest() == two.raw_manifest() and again.raw_config() == two.raw_config()
    assert problems(again, check_diff_ids=True) == []
    if as_tar:
        second = tmp_path / "second.tar"
        write_layout(
            second, [("docker.io/library/one:1", one), ("localhost:5000/two:latest", two)], as_tar=True
        )
        assert second.read_bytes() == dest.read_bytes()  # deterministic


def test_layout_entry_with_only_a_tag(store_root: Path, tmp_path: Path) -> None:
    store = Store(store_root)
    one, _ = _two_images(store)
    dest = tmp_path / "lay"
    write_layout(dest, [(None, one)])  # type: ignore[list-item]
    index = json.loads((dest / "index.json").read_text())
    index["manifests"][0]["annotations"] = {REF_NAME: "v3"}
    (dest / "index.json").write_text(json.dumps(index))
    other = Store(tmp_path / "o")
    assert [x.name for x in load_layout(other, dest)] == [None]
    assert [x.name for x in load_layout(other, dest, name="x/y")] == ["docker.io/x/y:latest"]
    assert [(e.tag, type(img).__name__) for e, img in layout_images(DirSource(dest))] == [
        ("v3", "SourceImage")
    ]


def test_layout_load_detects_corrupt_blob(store_root: Path, tmp_path: Path) -> None:
    store = Store(store_root)
    one, _ = _two_images(store)
    dest = tmp_path / "lay"
    write_layout(dest, [("one:1", one)])  # type: ignore[list-item]
    layer = image_layers(one)[0].digest  # type: ignore[arg-type]
    path = dest / "blobs" / "sha256" / layer.hex
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch):
        load_layout(Store(tmp_path / "o"), dest)
    path.unlink()
    with pytest.raises(ImageError, match="incomplete"):
        load_layout(Store(tmp_path / "o"), dest)
    with pytest.raises(ImageError, match="neither"):
        load_bundle(Store(tmp_path / "o"), tmp_path / "lay" / "blobs")


def test_docker_archive_round_trip(store_root: Path, tmp_path: Path) -> None:
    store = Store(store_root)
    _two_images(store)
    one = load_image(store, "docker.io/library/one:1")
    two = load_image(store, "localhost:5000/two:latest")
    out = tmp_path / "a.tar"
    write_archive(out, [(["docker.io/library/one:1", "docker.io/library/one:alias"], one), ([], two)])
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        repositories = json.load(tar.extractfile("repositories"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["one:1", "one:alias"] and manifest[1]["RepoTags"] == []
    assert manifest[0]["Config"] == f"blobs/sha256/{Digest.of(one.raw_config()).hex}"
    assert manifest[0]["Layers"] == [f"blobs/sha256/{d.digest.hex}" for d in image_layers(one)]
    assert set(repositories["one"]) == {"1", "alias"}
    other = Store(tmp_path / "other")
    loaded = load_archive(other, out)
    assert {x.name for x in loaded} == {"docker.io/library/one:1", "docker.io/library/one:alias", None}
    assert load_image(other, "docker.io/library/one:alias").raw_manifest() == one.raw_manifest()
    assert load_bundle(Store(tmp_path / "third"), out)[0].digest == one.digest


def _classic_archive(tmp_path: Path, *, gzip_layer: bool = False) -> tuple[Path, bytes, bytes]:
    """A docker-archive as Docker < 25 wrote it: <id>/layer.tar, <hex>.json, manifest.json."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    layer_tar = layer.getvalue()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["cat", "/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [str(Digest.of(layer_tar))]},
            "history": [{"created_by": "ADD hello.txt /"}],
            "docker_version": "20.10.0",
        }
    ).encode()
    cfg_hex = Digest.of(config).hex
    out = tmp_path / "classic.tar"
    stored = gzip.compress(layer_tar, mtime=0) if gzip_layer else layer_tar
    with tarfile.open(out, "w") as tar:
        for name, data in [
            (f"{cfg_hex}.json", config),
            ("abc123/layer.tar", stored),
            ("abc123/VERSION", b"1.0"),
            (
                "manifest.json",
                json.dumps(
                    [{"Config": f"{cfg_hex}.json", "RepoTags": ["hello:v1"], "Layers": ["abc123/layer.tar"]}]
                ).encode(),
            ),
            ("repositories", b'{"hello":{"v1":"abc123"}}'),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out, config, layer_tar


@pytest.mark.parametrize("gzip_layer", [False, True])
def test_classic_docker_archive_loads(store_root: Path, tmp_path: Path, gzip_layer: bool) -> None:
    path, config, layer_tar = _classic_archive(tmp_path, gzip_layer=gzip_layer)
    store = Store(store_root)
    loaded = load_bundle(store, path)
    assert [x.name for x in loaded] == ["docker.io/library/hello:v1"]
    img = load_image(store, "docker.io/library/hello:v1")
    assert img.raw_config() == config
    layer = image_layers(img)[0]
    assert layer.media_type == (MediaType.OCI_LAYER_GZIP if gzip_layer else MediaType.OCI_LAYER)
    if not gzip_layer:
        assert layer.digest == Digest.of(layer_tar)
    assert problems(img, check_diff_ids=True) == []
    assert image_config(img).extra["docker_version"] == "20.10.0"
    # saved again, the config and layer bytes are the ones that came in
    out = tmp_path / "again.tar"
    write_archive(out, [(["hello:v1"], img)])
    with tarfile.open(out) as tar:
        assert tar.extractfile(f"blobs/sha256/{Digest.of(config).hex}").read() == config  # type: ignore[union-attr]


def test_archive_with_wrong_diff_id_is_refused(store_root: Path, tmp_path: Path) -> None:
    path, _, _ = _classic_archive(tmp_path)
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    members["abc123/layer.tar"] = members["abc123/layer.tar"].replace(b"hello", b"HELLO")
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ImageError, match="diff_id"):
        load_archive(Store(store_root), path)


def test_import_rootfs(store_root: Path, tmp_path: Path) -> None:
    src = tmp_path / "root.tar"
    with tarfile.open(src, "w") as tar:
        for name, data in [("etc/hostname", b"box\n"), ("bin/x", b"#!/bin/sh\n")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    store = Store(store_root)
    digest = import_rootfs(store, src, name="docker.io/library/imported:1", created="2024-01-01T00:00:00Z")
    img = load_image(store, "docker.io/library/imported:1")
    assert image_digest(img) == digest
    assert image_config(img).diff_ids == (Digest.of(src.read_bytes()),)
    assert image_layers(img)[0].media_type == MediaType.OCI_LAYER_GZIP
    assert problems(img, check_diff_ids=True) == []
    [(entry, layer)] = history_with_layers(img)
    assert entry.comment == "Imported from root.tar" and layer == image_layers(img)[0]
    gz = tmp_path / "root.tar.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    again = import_rootfs(store, gz, created="2024-01-01T00:00:00Z")
    assert image_config(load_image(store, again)).diff_ids == image_config(img).diff_ids
    (tmp_path / "not.tar").write_bytes(b"x" * 2000)
    with pytest.raises(ImageError, match="not a tar"):
        import_rootfs(store, tmp_path / "not.tar")


@pytest.mark.parametrize("as_tar", [False, True])
def test_saving_a_corrupt_store_blob_fails(store_root: Path, tmp_path: Path, as_tar: bool) -> None:
    store = Store(store_root)
    _two_images(store)
    one = load_image(store, "docker.io/library/one:1")
    path = store.blob_path(image_layers(one)[0].digest)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # same size, other content
    path.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch):
        write_layout(tmp_path / ("o.tar" if as_tar else "o"), [("one:1", one)], as_tar=as_tar)
    assert not (tmp_path / "o.tar").exists() and not (tmp_path / "o.tar.partial").exists()


def test_archive_paths_cannot_leave_the_bundle(store_root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps([{"Config": "../secret.json", "Layers": []}]))
    with pytest.raises(ImageError, match="invalid path"):
        load_bundle(Store(store_root), bundle)
    # in a tar, a symlink pointing out of the archive is refused or resolves to nothing
    for target in ("../../../../../.." + str(secret), str(secret)):
        tar_path = tmp_path / "evil.tar"
        with tarfile.open(tar_path, "w") as tar:
            data = json.dumps([{"Config": "cfg.json", "Layers": []}]).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            link = tarfile.TarInfo("cfg.json")
            link.type = tarfile.SYMTYPE
            link.linkname = target
            tar.addfile(link)
        with pytest.raises(ImageError, match=r"invalid path|missing cfg\.json"):
            load_bundle(Store(store_root), tar_path)


@pytest.mark.parametrize("docker_archive", [False, True])
def test_a_tar_to_a_pipe_or_symlink_is_written_through(
    store_root: Path, tmp_path: Path, docker_archive: bool
) -> None:
    """``-o type=oci,dest=/dev/stdout``: the same bytes as a file, and the pipe or link stays."""
    import os
    import stat
    import threading

    store = Store(store_root)
    _two_images(store)
    one = load_image(store, "docker.io/library/one:1")

    def write(dest: Path) -> None:
        if docker_archive:
            write_archive(dest, [(("one:1",), one)])
        else:
            write_layout(dest, [("docker.io/library/one:1", one)], as_tar=True)

    write(tmp_path / "file.tar")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    write(fifo)
    reader.join(timeout=120)  # a safety net, not a measurement: a writer that missed the pipe hangs it
    if reader.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # let the reader go
    assert received, "nothing was written into the pipe"
    assert received == [(tmp_path / "file.tar").read_bytes()]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    link = tmp_path / "link.tar"
    link.symlink_to(tmp_path / "target.tar")
    write(link)
    assert link.is_symlink() and (tmp_path / "target.tar").read_bytes() == received[0]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".partial"))]


def test_add_to_layout_keeps_other_tags_and_present_blobs(store_root: Path, tmp_path: Path) -> None:
    from forklift.oci.layout import add_to_layout, read_layout_index
    from forklift.oci.model import Descriptor

    store = Store(store_root)
    layer = store.put_bytes(b"layer bytes")
    config = b'{"k":1}'

    def manifest(n: int) -> tuple[Descriptor, bytes]:
        raw = json.dumps({"schemaVersion": 2, "n": n}).encode()
        return Descriptor(MediaType.OCI_MANIFEST, Digest.of(raw), len(raw), artifact_type="x/y"), raw

    blobs = [
        (Descriptor(MediaType.OCI_LAYER, layer, 11), lambda: store.open_blob(layer)),
        (Descriptor("x/config", Digest.of(config), len(config)), lambda: io.BytesIO(config)),
    ]
    dest = tmp_path / "layout"
    first, first_raw = manifest(1)
    add_to_layout(dest, first, first_raw, blobs, tag="a")
    layer_file = dest / "blobs" / "sha256" / layer.hex
    inode = layer_file.stat().st_ino
    second, second_raw = manifest(2)
    add_to_layout(dest, second, second_raw, blobs, tag="b")
    third, third_raw = manifest(3)
    add_to_layout(dest, third, third_raw, blobs, tag="a")
    entries = read_layout_index(dest)
    assert [(e.digest, e.annotations[REF_NAME], e.artifact_type) for e in entries] == [
        (second.digest, "b", "x/y"),
        (third.digest, "a", "x/y"),
    ]
    assert layer_file.stat().st_ino == inode  # content-addressed: a blob already there is kept
    assert (dest / "blobs" / "sha256" / third.digest.hex).read_bytes() == third_raw
    assert json.loads((dest / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert not [p for p in dest.rglob("*") if p.name.endswith(".tmp")]
    (dest / "index.json").write_text("[]")
    with pytest.raises(ImageError, match="not an OCI image index"):
        add_to_layout(dest, first, first_raw, blobs, tag="a")
    assert read_layout_index(tmp_path / "none") == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageError, match="not a directory"):
        add_to_layout(tmp_path / "file", first, first_raw, blobs, tag="a")
