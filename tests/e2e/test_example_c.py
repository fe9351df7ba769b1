"""examples/c-static built end to end without network: a static C binary onto ``scratch``.

The builder base is assembled from this machine's own toolchain (the files of the gcc, binutils
and libc development packages, the shared libraries the compiler's programs load, and busybox for
/bin/sh), imported as a one-layer image; the example's Dockerfile takes it through
``--build-arg BUILDER_IMAGE`` and, finding gcc, skips apt. The built image is then checked: one
file, a static executable, and what it prints when ``forklift run`` runs it.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from forklift.build import BuildOptions, BuildResult, OutputSpec, build
from forklift.oci.archive import import_rootfs
from forklift.oci.image import image_config, image_layers, load_image
from forklift.oci.model import ContainerConfig
from forklift.oci.store import Store
from forklift.report.progress import PlainRenderer
from support import in_ci, require_tool

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "c-static"
TOOLCHAIN = "forklift-test/host-toolchain:latest"
GREETING = "hello, world, from a static C binary built by forklift"

# Top-level directories that are symlinks into /usr on a merged-/usr system (Debian 12).
MERGED_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# What a C compile-and-static-link does not need: docs, translations, charset modules, LTO,
# sanitizers and the C++/OpenMP runtimes. Leaving them out keeps the layer (and the test) small.
SKIP = re.compile(
    r"^/usr/share/(doc|man|info|locale|lintian|bug|gdb)/|/gconv/|/lto1$|lto-dump|/cc1plus$"
    r"|/lib[a-z]*san[^/]*$|/libgomp|/libitm|/libstdc\+\+|/libsupc\+\+|/libquadmath|/libgprofng"
)


@dataclass(frozen=True)
class Toolchain:
    """The assembled builder base: its store, name, and how long making it took."""

    store_root: Path
    name: str
    seconds: float
    files: int


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def _in_image(path: str) -> str:
    """The path inside the image for a host path: merged-/usr directories live under usr/."""
    rel = path.lstrip("/")
    if rel.split("/", 1)[0] in MERGED_DIRS:
        rel = "usr/" + rel
    return rel


def toolchain_paths() -> list[str]:
    """Host files for the compiler: the packages' files plus the libraries ``ldd`` names."""
    version = _run("gcc", "-dumpversion").strip().split(".")[0]
    packages = [
        "gcc",
        f"gcc-{version}",
        f"cpp-{version}",
        "binutils",
        "binutils-x86-64-linux-gnu",
        "libc6-dev",
        "libc6",
        f"libgcc-{version}-dev",
        "linux-libc-dev",
    ]
    paths: list[str] = []
    for package in packages:
        paths += _run("dpkg", "-L", package).splitlines()
    programs = [
        shutil.which("gcc") or "gcc",
        _run("gcc", "-print-prog-name=cc1").strip(),
        shutil.which("as") or "as",
        shutil.which("ld") or "ld",
    ]
    for program in programs:
        for line in _run("ldd", program).splitlines():
            found = re.search(r"(/\S+)", line.split("=>")[-1])
            if found:
                paths.append(found.group(1))
    return paths


def _root_info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uname = info.gname = "root"
    info.mtime = 1_700_000_000
    return info


def write_toolchain_tar(dest: Path) -> int:
    """Write the builder root filesystem (toolchain + busybox shell) as a tarball; return its entries."""
    entries: dict[str, Path] = {}
    for host in toolchain_paths():
        if SKIP.search(host):
            continue
        path = Path(host)
        if not (path.is_file() or path.is_symlink()) or path.is_dir():
            continue
        entries.setdefault(_in_image(host), path)
        if path.is_symlink():  # a library's soname link: the file it names comes too
            target = Path(os.path.realpath(path))
            if target.is_file():
                entries.setdefault(_in_image(str(target)), target)
    busybox = Path("/bin/busybox")
    entries.setdefault("usr/bin/busybox", busybox)
    applets = _run(str(busybox), "--list").split()
    extra = {
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        "etc/group": b"root:x:0:\nnogroup:x:65534:\n",
    }
    dirs = {"etc", "tmp", "root", "usr/bin", "usr/sbin", "usr/lib", "usr/lib64"}
    for name in entries:
        parent = Path(name).parent
        while str(parent) != ".":
            dirs.add(str(parent))
            parent = parent.parent
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(dirs):
            mode = {"tmp": 0o1777, "root": 0o700}.get(name, 0o755)
            tar.addfile(_root_info(name, tarfile.DIRTYPE, mode))
        for top in ("bin", "sbin", "lib", "lib64"):
            link = _root_info(top, tarfile.SYMTYPE, 0o777)
            link.linkname = f"usr/{top}"
            tar.addfile(link)
        for name, data in extra.items():
            info = _root_info(name, tarfile.REGTYPE, 0o644)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name in sorted(entries):
            info = tar.gettarinfo(str(entries[name]), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if info.isreg():
                with open(entries[name], "rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
        for applet in applets:
            if applet != "busybox" and f"usr/bin/{applet}" not in entries:
                link = _root_info(f"usr/bin/{applet}", tarfile.SYMTYPE, 0o777)
                link.linkname = "busybox"
                tar.addfile(link)
    return len(entries)


def has_program_interpreter(elf: bytes) -> bool:
    """Whether a 64-bit little-endian ELF file names a loader (a PT_INTERP program header): a
    dynamically linked executable does, a static one does not."""
    assert elf[4] == 2 and elf[5] == 1, "expected ELF64 little-endian"
    phoff = int.from_bytes(elf[32:40], "little")
    phentsize = int.from_bytes(elf[54:56], "little")
    phnum = int.from_bytes(elf[56:58], "little")
    types = [
        int.from_bytes(elf[phoff + i * phentsize : phoff + i * phentsize + 4], "little") for i in range(phnum)
    ]
    return 3 in types  # PT_INTERP


def test_interpreter_check_tells_static_from_dynamic() -> None:
    # The check itself, on a dynamic executable of this machine.
    assert has_program_interpreter(Path(sys.executable).resolve().read_bytes())


@pytest.fixture(scope="session")
def host_toolchain(tmp_path_factory: pytest.TempPathFactory) -> Toolchain:
    """A store holding TOOLCHAIN, a builder base made from the host's compiler (no network)."""
    require_tool("runc")
    for tool in ("gcc", "dpkg", "ldd"):
        require_tool(tool)
    if not Path("/bin/busybox").exists():
        if in_ci():
            pytest.fail("busybox-static is required in CI")
        pytest.skip("busybox-static is not installed")
    base = tmp_path_factory.mktemp("c-example")
    started = time.monotonic()
    tarball = base / "toolchain.tar"
    files = write_toolchain_tar(tarball)
    config = ContainerConfig(
        env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",), cmd=("sh",)
    )
    store_root = base / "store"
    # No compression: the layer only ever lives in this store, so gzip would be time for nothing.
    import_rootfs(
        Store(store_root), tarball, name=f"docker.io/{TOOLCHAIN}", compression="none", config=config
    )
    tarball.unlink()
    return Toolchain(store_root=store_root, name=TOOLCHAIN, seconds=time.monotonic() - started, files=files)


@dataclass(frozen=True)
class BuiltExample:
    result: BuildResult
    progress: str
    rootfs: Path
    seconds: float


@pytest.fixture(scope="session")
def built_example(
    host_toolchain: Toolchain, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BuiltExample]:
    """examples/c-static built on the host toolchain with no network, tagged c-static:test and
    exported as a root filesystem directory."""
    out = tmp_path_factory.mktemp("c-example-out") / "rootfs"
    progress = io.StringIO()
    started = time.monotonic()
    result = build(
        BuildOptions(
            context=EXAMPLE,
            root=host_toolchain.store_root,
            tags=("c-static:test",),
            build_args={"BUILDER_IMAGE": host_toolchain.name},
            network="none",
            outputs=(OutputSpec(type="local", dest=out),),
        ),
        events=PlainRenderer(progress),
    )
    yield BuiltExample(result, progress.getvalue(), out, time.monotonic() - started)


def test_toolchain_base_is_quick_to_make(host_toolchain: Toolchain) -> None:
    # Coarse bound from the budget: assembling the base must stay far below a real bootstrap.
    print(f"toolchain base: {host_toolchain.files} files in {host_toolchain.seconds:.1f}s")
    assert host_toolchain.seconds < 30
    img = load_image(Store(host_toolchain.store_root), f"docker.io/{TOOLCHAIN}")
    assert image_config(img).config.cmd == ("sh",)


def test_final_image_holds_only_the_static_binary(built_example: BuiltExample) -> None:
    files = sorted(str(p.relative_to(built_example.rootfs)) for p in built_example.rootfs.rglob("*"))
    assert files == ["hello"]
    binary = built_example.rootfs / "hello"
    assert binary.read_bytes()[:4] == b"\x7fELF"
    assert os.access(binary, os.X_OK)
    assert not has_program_interpreter(binary.read_bytes())
    print(f"build: {built_example.seconds:.1f}s")


def test_image_config_runs_the_binary(built_example: BuiltExample, host_toolchain: Toolchain) -> None:
    img = load_image(Store(host_toolchain.store_root), "docker.io/library/c-static:test")
    config = image_config(img)
    assert config.config.cmd == ("/hello",)
    assert len(image_layers(img)) == 1


def test_built_image_prints_its_greeting(host_toolchain: Toolchain, built_example: BuiltExample) -> None:
    forklift = [sys.executable, "-m", "forklift.cli.main", "--root", str(host_toolchain.store_root)]
    ran = subprocess.run(
        [*forklift, "run", "--rm", "c-static:test"], capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == GREETING
    # A command replaces CMD; the static binary needs nothing else from the (empty) image.
    named = subprocess.run(
        [*forklift, "run", "--rm", "--network", "none", "c-static:test", "/hello", "forklift"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert named.returncode == 0, named.stderr
    assert named.stdout.strip() == GREETING.replace("world", "forklift")


def test_rebuild_is_all_cached(built_example: BuiltExample, host_toolchain: Toolchain) -> None:
    progress = io.StringIO()
    again = build(
        BuildOptions(
            context=EXAMPLE,
            root=host_toolchain.store_root,
            tags=("c-static:test",),
            build_args={"BUILDER_IMAGE": host_toolchain.name},
            network="none",
        ),
        events=PlainRenderer(progress),
    )
    assert again.image.image_id == built_example.result.image.image_id
