"""Build engine benchmark: forklift on the peers' Dockerfiles (../shared/peers), next to BuildKit.

Scenarios (each the median of RUNS runs, through the CLI so Python start-up is included):

* multistage: a builder stage that "compiles" (hello.c -> /hello), copied into a runtime stage,
  on a busybox base (the peers' version installs gcc on Debian; with no Debian base here the
  builder step is a copy, so cold times are not comparable, warm and touched are);
* parallel: ../shared/peers/Dockerfile.parallel (three stages of ``sleep 2`` + 20 MB), against its
  longest stage (2 s): the target is 1.15x;
* bigctx: ../shared/peers/Dockerfile.bigctx on 5,000 small files + 3 x 64 MiB (212 MB): warm
  (nothing changed) and touched (one small file's content changed).

BuildKit runs side by side when ``BENCH_DOCKER_HOST`` names a running dockerd (see
../shared/peers/run-buildkit.sh start) with ``anchors/busybox:latest`` loaded; otherwise the
ratios are against the BuildKit figures measured on this machine in ../shared/peers/README.md,
and the output says so.

    .venv/bin/python bench/bench_build.py [--runs 3] [--skip-bigctx]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO.parent / "shared" / "peers"
FORKLIFT = REPO / ".venv" / "bin" / "forklift"
# BuildKit (overlay2) on this machine, from ../shared/peers/README.md.
BUILDKIT_REFERENCE = {
    "multistage warm": 0.09,
    "multistage touched": 0.37,
    "parallel": 2.63,
    "bigctx warm": 0.25,
    "bigctx touched": 2.26,
}


def busybox_store(root: Path) -> None:
    """A store holding docker.io/library/busybox:latest made from /bin/busybox."""
    from forklift.oci.archive import import_rootfs
    from forklift.oci.model import ContainerConfig
    from forklift.oci.store import Store

    rootfs = root.parent / "busybox-rootfs"
    for d in ("bin", "etc", "tmp", "root", "usr/bin", "var"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
    for applet in subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout.split():
        link = rootfs / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    tar_path = root.parent / "busybox.tar"
    with tarfile.open(tar_path, "w") as tar:
        for p in sorted(rootfs.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(rootfs)), recursive=False)
    config = ContainerConfig(env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",))
    import_rootfs(Store(root), tar_path, name="docker.io/library/busybox:latest", config=config)


def forklift(root: Path, context: Path, dockerfile: Path, *extra: str) -> float:
    """One ``forklift build`` (wall time in seconds)."""
    started = time.monotonic()
    subprocess.run(
        [str(FORKLIFT), "--root", str(root), "build", "-q", "-f", str(dockerfile), *extra, str(context)],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""},
    )
    return time.monotonic() - started


def buildkit(context: Path, dockerfile: Path, *extra: str) -> float | None:
    """One BuildKit build through a running dockerd, or None when there is none."""
    host = os.environ.get("BENCH_DOCKER_HOST")
    if not host:
        return None
    started = time.monotonic()
    subprocess.run(
        ["/usr/bin/docker", "build", "-q", "--network=host", "--build-arg", "BASE_REG=anchors", *extra,
         "-f", str(dockerfile), str(context)],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "1"},
    )  # fmt: skip
    return time.monotonic() - started


def median(fn: object, runs: int, before: object = None) -> float:
    """Median wall time of ``runs`` calls of ``fn`` (``before`` runs untimed before each)."""
    times = []
    for _ in range(runs):
        if callable(before):
            before()
        assert callable(fn)
        times.append(fn())
    return statistics.median(times)


def report(name: str, ours: float, theirs: float | None) -> None:
    """One result line: our time, BuildKit's (measured or reference), and the ratio."""
    if theirs is None:
        ref = BUILDKIT_REFERENCE.get(name)
        if ref is None:
            print(f"{name:22s} forklift {ours:6.2f} s")
            return
        print(
            f"{name:22s} forklift {ours:6.2f} s   BuildKit {ref:6.2f} s (reference)  ratio {ours / ref:.2f}x"
        )
    else:
        ratio = ours / theirs
        print(f"{name:22s} forklift {ours:6.2f} s   BuildKit {theirs:6.2f} s (this run)  ratio {ratio:.2f}x")


def main() -> None:
    """Run the scenarios and print a table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-bigctx", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="forklift-bench-"))
    try:
        root = work / "store"
        busybox_store(root)
        base = "FROM busybox"

        # -- multistage --------------------------------------------------------------------------
        ms = work / "ms"
        ms.mkdir()
        shutil.copy(PEERS / "ctx-multistage" / "hello.c", ms / "hello.c")
        ms_file = work / "Dockerfile.ms"
        ms_file.write_text(
            f"{base} AS builder\nWORKDIR /src\nCOPY hello.c .\nRUN cp hello.c /hello && chmod 755 /hello\n"
            f"{base} AS runtime\nCOPY --from=builder /hello /usr/local/bin/hello\nUSER 65534\n"
            'CMD ["/usr/local/bin/hello"]\n'
        )
        report("multistage cold", median(lambda: forklift(root, ms, ms_file, "--no-cache"), args.runs), None)
        forklift(root, ms, ms_file)
        report("multistage warm", median(lambda: forklift(root, ms, ms_file), args.runs), None)
        counter = iter(range(10**6))

        def touch_ms() -> None:
            (ms / "hello.c").write_text(
                (PEERS / "ctx-multistage" / "hello.c").read_text() + f"// {next(counter)}\n"
            )
            time.sleep(0.15)

        report("multistage touched", median(lambda: forklift(root, ms, ms_file), args.runs, touch_ms), None)

        # -- parallel ----------------------------------------------------------------------------
        par_file = work / "Dockerfile.parallel"
        par_file.write_text(
            (PEERS / "Dockerfile.parallel").read_text().replace("${BASE_REG}/busybox:latest", "busybox")
        )
        empty = work / "empty"
        empty.mkdir()
        par = median(lambda: forklift(root, empty, par_file, "--no-cache"), args.runs)
        report("parallel", par, buildkit(empty, PEERS / "Dockerfile.parallel", "--no-cache"))
        print(f"{'':22s} = {par / 2.0:.2f}x the longest stage (target 1.15x; default --jobs = CPUs here)")
        par3 = median(lambda: forklift(root, empty, par_file, "--no-cache", "--jobs", "3"), args.runs)
        report("parallel --jobs 3", par3, None)
        print(f"{'':22s} = {par3 / 2.0:.2f}x the longest stage")

        # -- bigctx ------------------------------------------------------------------------------
        if not args.skip_bigctx:
            big = work / "big"
            for i in range(50):
                pkg = big / f"pkg{i:02d}"
                pkg.mkdir(parents=True)
                for j in range(100):
                    (pkg / f"f{j:03d}.txt").write_text(f"{i} {j}\n" * 20)
            for k in range(3):
                with open(big / f"blob{k}.bin", "wb") as f:
                    f.write(os.urandom(64 << 20))
            big_file = work / "Dockerfile.bigctx"
            big_file.write_text(
                (PEERS / "Dockerfile.bigctx").read_text().replace("${BASE_REG}/busybox:latest", "busybox")
            )
            report("bigctx cold", forklift(root, big, big_file), None)
            time.sleep(0.15)
            forklift(root, big, big_file)
            report("bigctx warm", median(lambda: forklift(root, big, big_file), args.runs), None)

            def touch_big() -> None:
                (big / "pkg00" / "f000.txt").write_text(f"changed {next(counter)}\n")
                time.sleep(0.15)

            report(
                "bigctx touched", median(lambda: forklift(root, big, big_file), args.runs, touch_big), None
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not os.environ.get("BENCH_DOCKER_HOST"):
        print("BuildKit figures: ../shared/peers/README.md (set BENCH_DOCKER_HOST to measure side by side)")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    main()
