"""Interop with tools nobody here wrote: skopeo and umoci read what forklift writes, and forklift
loads what they write, byte for byte."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from forklift.oci.image import image_config, image_layers, load_image
from forklift.oci.model import Digest, Index, Manifest
from forklift.oci.store import Store

pytestmark = pytest.mark.e2e


def forklift(root: Path, *args: str) -> str:
    """Run the real forklift command (a subprocess, as from a shell)."""
    proc = subprocess.run(
        [sys.executable, "-m", "forklift.cli.main", "--root", str(root), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def run_tool(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, check=False, cwd=cwd)
    assert proc.returncode == 0, f"{args}: {proc.stderr}"
    return proc.stdout


def tree(root: Path) -> dict[str, tuple[str, str | bytes, int]]:
    """Every path under root: (kind, content or link target, permission bits)."""
    out: dict[str, tuple[str, str | bytes, int]] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        mode = path.lstat().st_mode & 0o7777
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path), 0)
        elif path.is_dir():
            out[rel] = ("dir", "", mode)
        else:
            out[rel] = ("file", path.read_bytes(), mode)
    return out


def reachable_blobs(layout: Path, manifest_digest: Digest) -> dict[str, bytes]:
    """Manifest, config and layer bytes of one image of a layout, by digest."""
    raw = (layout / "blobs" / manifest_digest.algorithm / manifest_digest.hex).read_bytes()
    manifest = Manifest.from_bytes(raw)
    out = {str(manifest_digest): raw}
    for desc in (manifest.config, *manifest.layers):
        out[str(desc.digest)] = (layout / "blobs" / desc.digest.algorithm / desc.digest.hex).read_bytes()
    return out


@pytest.fixture(scope="module")
def saved(busybox_image: Callable[[Path], str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding busybox, saved once as an OCI layout (oci/) and a docker-archive (busybox.tar)."""
    base = tmp_path_factory.mktemp("interop")
    busybox_image(base / "store")
    forklift(base / "store", "save", "-o", str(base / "oci"), "--format", "oci", "busybox")
    forklift(base / "store", "save", "-o", str(base / "busybox.tar"), "busybox:latest")
    return base


def test_skopeo_reads_saved_oci_layout_and_umoci_unpacks_it(
    saved: Path, busybox_rootfs: Path, tool: Callable[[str], str]
) -> None:
    skopeo = tool("skopeo")
    umoci = tool("umoci")
    img = load_image(Store(saved / "store"), "docker.io/library/busybox:latest")
    info = json.loads(run_tool(skopeo, "inspect", f"oci:{saved / 'oci'}:latest"))
    assert info["Digest"] == str(img.digest)
    assert info["Layers"] == [str(d.digest) for d in image_layers(img)]
    assert (
        run_tool(skopeo, "inspect", "--raw", "--config", f"oci:{saved / 'oci'}:latest").encode()
        == img.raw_config()
    )
    run_tool(skopeo, "copy", "-q", f"oci:{saved / 'oci'}:latest", f"oci:{saved / 'copied'}:latest")
    assert reachable_blobs(saved / "copied", img.digest) == reachable_blobs(saved / "oci", img.digest)
    run_tool(umoci, "unpack", "--rootless", "--image", f"{saved / 'oci'}:latest", str(saved / "bundle"))
    assert tree(saved / "bundle" / "rootfs") == tree(busybox_rootfs)


def test_skopeo_reads_saved_docker_archive(
    saved: Path, busybox_rootfs: Path, tool: Callable[[str], str]
) -> None:
    skopeo = tool("skopeo")
    umoci = tool("umoci")
    img = load_image(Store(saved / "store"), "docker.io/library/busybox:latest")
    archive = f"docker-archive:{saved / 'busybox.tar'}"
    info = json.loads(run_tool(skopeo, "inspect", f"{archive}:docker.io/library/busybox:latest"))
    assert info["Name"] == "docker.io/library/busybox"  # found by the RepoTags forklift wrote
    assert info["Layers"] == [str(d) for d in image_config(img).diff_ids]  # it checked the layer
    assert run_tool(skopeo, "inspect", "--raw", "--config", archive).encode() == img.raw_config()
    run_tool(skopeo, "copy", "-q", f"{archive}:busybox:latest", f"oci:{saved / 'from-archive'}:latest")
    run_tool(umoci, "unpack", "--rootless", "--image", f"{saved / 'from-archive'}:latest", str(saved / "b2"))
    assert tree(saved / "b2" / "rootfs") == tree(busybox_rootfs)


@pytest.fixture(scope="module")
def umoci_layout(tmp_path_factory: pytest.TempPathFactory, tool: Callable[[str], str]) -> Path:
    """An image made entirely by umoci: init, new, insert a directory, set a config."""
    umoci = tool("umoci")
    base = tmp_path_factory.mktemp("umoci")
    content = base / "content"
    (content / "app").mkdir(parents=True)
    (content / "app" / "hello.txt").write_text("hello from umoci\n")
    (content / "app" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (content / "app" / "run.sh").chmod(0o755)
    (content / "app" / "link").symlink_to("hello.txt")
    layout = base / "layout"
    run_tool(umoci, "init", "--layout", str(layout))
    run_tool(umoci, "new", "--image", f"{layout}:v1")
    run_tool(umoci, "insert", "--rootless", "--image", f"{layout}:v1", str(content / "app"), "/app")
    run_tool(umoci, "config", "--image", f"{layout}:v1", "--config.cmd", "/app/run.sh", "--config.env", "A=b")
    return layout


def _index_digest(layout: Path, tag: str) -> Digest:
    index = Index.from_bytes((layout / "index.json").read_bytes())
    [desc] = [d for d in index.manifests if d.annotations.get("org.opencontainers.image.ref.name") == tag]
    return desc.digest


def test_umoci_image_round_trips_byte_identically(
    umoci_layout: Path, tmp_path: Path, tool: Callable[[str], str]
) -> None:
    umoci = tool("umoci")
    root = tmp_path / "store"
    assert forklift(root, "load", "-i", str(umoci_layout), "-t", "made-by-umoci:v1") == (
        "Loaded image: made-by-umoci:v1\n"
    )
    original = _index_digest(umoci_layout, "v1")
    assert Store(root).get_ref("docker.io/library/made-by-umoci:v1") == original
    forklift(root, "save", "-o", str(tmp_path / "out"), "--format", "oci", "made-by-umoci:v1")
    assert _index_digest(tmp_path / "out", "v1") == original
    assert reachable_blobs(tmp_path / "out", original) == reachable_blobs(umoci_layout, original)
    run_tool(umoci, "unpack", "--rootless", "--image", f"{tmp_path / 'out'}:v1", str(tmp_path / "bundle"))
    assert (tmp_path / "bundle" / "rootfs" / "app" / "hello.txt").read_text() == "hello from umoci\n"
    assert os.readlink(tmp_path / "bundle" / "rootfs" / "app" / "link") == "hello.txt"
    config = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert config["process"]["args"] == ["/app/run.sh"] and "A=b" in config["process"]["env"]


def test_skopeo_docker_archive_round_trips_byte_identically(
    umoci_layout: Path, tmp_path: Path, tool: Callable[[str], str]
) -> None:
    skopeo = tool("skopeo")
    archive = tmp_path / "skopeo.tar"
    run_tool(
        skopeo, "copy", "-q", f"oci:{umoci_layout}:v1", f"docker-archive:{archive}:example.com/team/app:2"
    )
    root = tmp_path / "store"
    assert forklift(root, "load", "-i", str(archive)) == "Loaded image: example.com/team/app:2\n"
    forklift(root, "save", "-o", str(tmp_path / "again.tar"), "example.com/team/app:2")

    def members(path: Path) -> tuple[dict[str, bytes], list[str]]:
        """Config and layer files by the digest of their bytes (names differ between writers)."""
        with tarfile.open(path) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
            names = [manifest[0]["Config"], *manifest[0]["Layers"]]
            out = {}
            for name in names:
                member = tar.getmember(name)
                while member.issym():
                    member = tar.getmember(str(Path(name).parent / member.linkname))
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                out[str(Digest.of(data))] = data
            return out, list(manifest[0]["RepoTags"])

    theirs, their_tags = members(archive)
    ours, our_tags = members(tmp_path / "again.tar")
    assert ours == theirs and our_tags == their_tags == ["example.com/team/app:2"]
    config_from_skopeo = run_tool(
        skopeo, "inspect", "--raw", "--config", f"docker-archive:{tmp_path / 'again.tar'}"
    )
    assert Digest.of(config_from_skopeo.encode()) in {Digest.parse(d) for d in theirs}


def test_skopeo_oci_archive_loads_with_its_name(
    umoci_layout: Path, tmp_path: Path, tool: Callable[[str], str]
) -> None:
    skopeo = tool("skopeo")
    archive = tmp_path / "oci-archive.tar"
    run_tool(skopeo, "copy", "-q", f"oci:{umoci_layout}:v1", f"oci-archive:{archive}:team/app:3")
    root = tmp_path / "store"
    assert forklift(root, "load", "-i", str(archive)) == "Loaded image: team/app:3\n"
    assert Store(root).get_ref("docker.io/team/app:3") == _index_digest(umoci_layout, "v1")
