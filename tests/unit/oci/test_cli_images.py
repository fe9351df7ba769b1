"""The image commands, driven through the real click group against a real store."""

from __future__ import annotations

import datetime
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from forklift.cli.images import human_since, human_size
from forklift.cli.main import cli
from forklift.errors import ImageError
from forklift.oci.image import image_config, image_digest, image_id, image_layers, load_image
from forklift.oci.store import Store


def run(root: Path, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--root", str(root), *args], catch_exceptions=True)
    return result


def ok(root: Path, *args: str) -> str:
    result = run(root, *args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


@pytest.fixture
def loaded(busybox_image: Callable[[Path], str], store_root: Path) -> Path:
    busybox_image(store_root)
    return store_root


def test_images_lists_familiar_names(loaded: Path) -> None:
    out = ok(loaded, "images").splitlines()
    assert out[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    row = out[1].split()
    img = load_image(Store(loaded), "docker.io/library/busybox:latest")
    assert row[:3] == ["busybox", "latest", image_id(img).short]
    assert ok(loaded, "images", "-q").strip() == image_id(img).short


def test_tag_inspect_history_rmi(loaded: Path) -> None:
    ok(loaded, "tag", "busybox", "localhost:5000/mine:v1")
    store = Store(loaded)
    assert store.get_ref("localhost:5000/mine:v1") == store.get_ref("docker.io/library/busybox:latest")
    data = json.loads(ok(loaded, "inspect", "--format", "json", "localhost:5000/mine:v1"))
    assert data[0]["RepoTags"] == ["busybox:latest", "localhost:5000/mine:v1"]
    assert data[0]["Config"]["config"]["Cmd"] == ["sh"] and data[0]["Manifest"]["schemaVersion"] == 2
    ident = data[0]["Id"]
    text = ok(loaded, "inspect", "--check", ident[7:19])
    assert "Check:         ok" in text and ident in text
    history = ok(loaded, "history", "busybox").splitlines()
    assert history[0].split()[:2] == ["LAYER", "CREATED"] and "forklift import" in history[1]
    assert "Untagged: localhost:5000/mine:v1" in ok(loaded, "rmi", "localhost:5000/mine:v1")
    assert store.get_ref("localhost:5000/mine:v1") is None
    missing = run(loaded, "inspect", "busybx")
    assert isinstance(missing.exception, ImageError) and "did you mean busybox:latest" in str(
        missing.exception
    )


def test_save_load_both_formats(loaded: Path, tmp_path: Path) -> None:
    store = Store(loaded)
    digest = store.get_ref("docker.io/library/busybox:latest")
    ok(loaded, "save", "-o", str(tmp_path / "bb.tar"), "busybox")
    ok(loaded, "save", "-o", str(tmp_path / "oci"), "--format", "oci", "busybox:latest")
    ok(loaded, "save", "-o", str(tmp_path / "oci.tar"), "--format", "oci", "busybox:latest")
    with tarfile.open(tmp_path / "bb.tar") as tar:
        assert {"manifest.json", "repositories", "index.json", "oci-layout"} <= set(tar.getnames())
    assert (tmp_path / "oci" / "index.json").is_file()
    for i, src in enumerate(("bb.tar", "oci", "oci.tar")):
        other = tmp_path / f"s{i}"
        assert ok(other, "load", "-i", str(tmp_path / src)) == "Loaded image: busybox:latest\n"
        assert Store(other).get_ref("docker.io/library/busybox:latest") == digest
    # -t names only what the input leaves unnamed
    assert ok(tmp_path / "s9", "load", "-i", str(tmp_path / "oci"), "-t", "other:2") == (
        "Loaded image: busybox:latest\n"
    )
    index = json.loads((tmp_path / "oci" / "index.json").read_text())
    index["manifests"][0]["annotations"] = {}
    (tmp_path / "oci" / "index.json").write_text(json.dumps(index))
    assert ok(tmp_path / "s10", "load", "-i", str(tmp_path / "oci")) == f"Loaded image ID: {digest}\n"
    assert ok(tmp_path / "s11", "load", "-i", str(tmp_path / "oci"), "-t", "other:2") == (
        "Loaded image: other:2\n"
    )


def test_import_and_prune(store_root: Path, busybox_rootfs_tar: Path) -> None:
    digest = ok(store_root, "import", str(busybox_rootfs_tar), "mybox:1").strip()
    store = Store(store_root)
    img = load_image(store, "docker.io/library/mybox:1")
    assert str(image_digest(img)) == digest and len(image_config(img).diff_ids) == 1
    assert "Total reclaimed space: 0B" in ok(store_root, "prune")
    ok(store_root, "rmi", "mybox:1")
    out = ok(store_root, "prune")
    assert "Deleted 3 blob(s)" in out and "Total reclaimed space: 0B" not in out
    assert list(store.list_blobs()) == []


def test_humanised_columns() -> None:
    now = datetime.datetime(2024, 1, 10, tzinfo=datetime.UTC)
    assert human_since("2024-01-09T22:59:00.123456789Z", now) == "About an hour ago"
    assert human_since("2024-01-01T00:00:00Z", now) == "9 days ago"
    assert human_since(None, now) == "N/A"
    assert (human_size(999), human_size(4_260_000)) == ("999B", "4.26MB")


def test_names_win_over_id_prefixes_and_ids_untag_every_name(loaded: Path) -> None:
    store = Store(loaded)
    img = load_image(store, "docker.io/library/busybox:latest")
    prefix = image_id(img).hex[:6]
    ok(loaded, "tag", prefix, f"{prefix}:latest")  # an ID prefix names the image...
    ok(loaded, "tag", "busybox", "other:1")
    assert ok(loaded, "rmi", prefix) == f"Untagged: {prefix}:latest\n"  # ...the name wins over the ID
    ok(loaded, "tag", "busybox", f"{prefix}:latest")
    out = ok(loaded, "rmi", image_id(img).hex[:12])  # an ID untags every name of the image
    expected = sorted([f"{prefix}:latest", "busybox:latest", "other:1"])
    assert sorted(out.splitlines()) == [f"Untagged: {x}" for x in expected]
    assert store.list_refs() == {}
    broken = run(loaded, "rmi", "nothing-here")
    assert isinstance(broken.exception, ImageError)


def test_save_compresses_uncompressed_layers_on_request(store_root: Path, busybox_rootfs_tar: Path) -> None:
    ok(store_root, "import", "--compression", "none", str(busybox_rootfs_tar), "raw:1")
    out = store_root.parent / "zstd"
    ok(store_root, "save", "--format", "oci", "--compression", "zstd", "-o", str(out), "raw:1")
    ok(store_root, "save", "--format", "oci", "-o", str(store_root.parent / "kept"), "raw:1")
    other = store_root.parent / "other"
    ok(other, "load", "-i", str(out))
    img = load_image(Store(other), "docker.io/library/raw:1")
    kept = json.loads((store_root.parent / "kept" / "index.json").read_text())["manifests"][0]["digest"]
    assert [d.media_type for d in image_layers(img)] == ["application/vnd.oci.image.layer.v1.tar+zstd"]
    assert str(img.digest) != kept  # the stored image itself is unchanged
    assert str(image_id(img)) == str(image_id(load_image(Store(store_root), "docker.io/library/raw:1")))
