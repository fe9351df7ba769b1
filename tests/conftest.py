"""Fixtures shared by every test area: paths to ../shared and a tiny busybox root filesystem."""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from support import in_ci, make_busybox_rootfs, require_tool

if TYPE_CHECKING:
    from forklift.runtime.oci import OciRuntime

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (conformance vectors, peers); tests skip without it, except in CI."""
    if not SHARED.is_dir():
        if in_ci():
            pytest.fail("../shared is required in CI")
        pytest.skip("../shared is absent (a user's clone): conformance vectors are not available")
    return SHARED


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention busybox root filesystem directory shared by the session."""
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture(scope="session")
def busybox_rootfs_tar(busybox_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox root filesystem as an uncompressed tarball (what ``docker import`` takes)."""
    out = tmp_path_factory.mktemp("busybox-tar") / "rootfs.tar"
    with tarfile.open(out, "w") as tar:
        for path in sorted(busybox_rootfs.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(busybox_rootfs)), recursive=False)
    return out


@pytest.fixture
def store_root(tmp_path: Path) -> Iterator[Path]:
    """An empty store root for one test."""
    root = tmp_path / "store"
    root.mkdir()
    yield root


BUSYBOX_IMAGE = "docker.io/library/busybox:latest"


@pytest.fixture(scope="session")
def _busybox_layout(busybox_rootfs_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox image (one gzip layer, fixed timestamp) as an OCI layout, made once per session."""
    from forklift.oci.archive import import_rootfs
    from forklift.oci.image import load_image
    from forklift.oci.layout import write_layout
    from forklift.oci.model import ContainerConfig
    from forklift.oci.store import Store

    base = tmp_path_factory.mktemp("busybox-image")
    store = Store(base / "store")
    config = ContainerConfig(
        env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",), cmd=("sh",)
    )
    digest = import_rootfs(store, busybox_rootfs_tar, created="2024-01-01T00:00:00Z", config=config)
    write_layout(base / "layout", [(BUSYBOX_IMAGE, load_image(store, digest))])
    return base / "layout"


@pytest.fixture(scope="session")
def busybox_image(_busybox_layout: Path) -> Callable[[Path], str]:
    """A loader: ``busybox_image(store_root)`` puts a single-layer busybox image (Env PATH, Cmd sh)
    into the store at ``store_root`` and returns its canonical name, docker.io/library/busybox:latest."""
    from forklift.oci.layout import load_layout
    from forklift.oci.store import Store

    def load(root: Path) -> str:
        load_layout(Store(root), _busybox_layout)
        return BUSYBOX_IMAGE

    return load


@pytest.fixture(scope="session")
def oci_runtime(tmp_path_factory: pytest.TempPathFactory) -> OciRuntime:
    """A probed OCI runtime (``forklift.runtime.oci.OciRuntime``, runc here) with a private state dir.

    Skips without runc, fails in CI. Use it instead of importing ``require_tool`` from conftest:
    with tests/conformance/conftest.py present, ``from conftest import ...`` may find that one.
    """
    require_tool("runc")
    from forklift.runtime.oci import find_runtime

    return find_runtime(state_dir=tmp_path_factory.mktemp("runc-state"))


@pytest.fixture(scope="session")
def tool() -> Callable[[str], str]:
    """``require_tool`` as a fixture. Test modules cannot rely on ``from conftest import ...``: each
    conftest.py outside a package is imported as the module ``conftest``, so with two of them (as
    tests/conformance has) whichever pytest imported last wins and the import fails."""
    return require_tool
