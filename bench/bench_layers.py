"""Layer speed: forklift's writer and applier next to tar pipelines on the same tree, in one run.

The tree: ~5,000 small files in nested directories plus 3 large random files (32 MiB each), made
under /tmp. Each contender runs a few times on a warm page cache and the best time counts.

    write (gzip):  forklift write_layer(gzip)    vs  tar -C DIR -c . | gzip -1 | sha256sum
    write (none):  forklift write_layer(none)    vs  tar -C DIR -c . | sha256sum
    apply:         forklift apply_layer(tar)     vs  tar -x -f layer.tar
    apply (gzip):  forklift apply_layer(gz blob) vs  tar -xzf layer.tar.gz

MB/s is uncompressed tar bytes per second; "ratio" is forklift's time over the peer's (the goal
is at most 2.0; below 1.0 means forklift is faster). Run: .venv/bin/python bench/bench_layers.py
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from forklift.oci.compression import HAVE_ISAL, open_uncompressed
from forklift.snapshot.diff import DirectorySource, LayerOptions, write_layer
from forklift.snapshot.unpack import apply_layer


def make_tree(root: Path, *, small: int, large: int, large_mib: int) -> None:
    """Small files of mixed, partly compressible content in a nested layout, plus large random files."""
    rng = random.Random(42)
    words = [
        bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(500)
    ]
    for i in range(small):
        d = root / f"pkg{i // 250:02d}" / f"mod{(i // 25) % 10}"
        d.mkdir(parents=True, exist_ok=True)
        size = int(rng.lognormvariate(7.5, 1.2))  # median ~1.8 KB, a long tail to ~100 KB
        text = b" ".join(rng.choice(words) for _ in range(size // 5 + 1))[:size]
        (d / f"file{i}.py").write_bytes(text if i % 4 else os.urandom(size))
    for i in range(large):
        with (root / f"large{i}.bin").open("wb") as f:
            for _ in range(large_mib):
                f.write(os.urandom(1 << 20))


@dataclass
class Timing:
    """Best wall-clock time and best CPU time (user+sys) over the runs."""

    wall: float = float("inf")
    cpu: float = float("inf")


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def race(
    runs: int, ours: Callable[[], None], peer: Callable[[], None], before: Callable[[], None] | None = None
) -> tuple[Timing, Timing]:
    """Best times of ``ours`` (in this process) and ``peer`` (a child), run alternately so load
    changes hit both alike. CPU time counts this process for ours and the children for the peer."""
    best = (Timing(), Timing())
    for _ in range(runs):
        for i, (fn, cpu) in enumerate(((ours, _cpu_self), (peer, _cpu_children))):
            if before is not None:
                before()
            start, start_cpu = time.perf_counter(), cpu()
            fn()
            best[i].wall = min(best[i].wall, time.perf_counter() - start)
            best[i].cpu = min(best[i].cpu, cpu() - start_cpu)
    return best


def sh(cmd: str) -> None:
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=5000)
    parser.add_argument("--large", type=int, default=3)
    parser.add_argument("--large-mib", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--dir", default="/tmp", help="where to make the tree (e.g. /dev/shm: no disk noise)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="forklift-bench-layers-", dir=args.dir))
    try:
        tree = work / "tree"
        tree.mkdir()
        make_tree(tree, small=args.small, large=args.large, large_mib=args.large_mib)
        layer_tar = work / "layer.tar"
        layer_gz = work / "layer.tar.gz"
        sh(f"tar -C {tree} -c . > /dev/null")  # warm the page cache for everyone

        def write(compression: str, dest: Path) -> Callable[[], None]:
            def run() -> None:
                with dest.open("wb") as f:
                    write_layer(DirectorySource(tree), f, LayerOptions(compression=compression))  # type: ignore[arg-type]

            return run

        write("none", layer_tar)()  # the layers the apply rows read (untimed)
        write("gzip", layer_gz)()
        tar_size = layer_tar.stat().st_size
        # Timed writes go to /dev/null, like the peers' pipelines, which store nothing either: the
        # digests are still computed, so the work is the same and disk noise stays out.
        devnull = Path(os.devnull)
        rows: list[tuple[str, Timing, Timing]] = []
        t_ours, t_peer = race(
            args.runs, write("gzip", devnull), lambda: sh(f"tar -C {tree} -c . | gzip -1 | sha256sum")
        )
        rows.append(("write gzip  (tar | gzip -1 | sha256sum)", t_ours, t_peer))
        t_ours, t_peer = race(
            args.runs, write("none", devnull), lambda: sh(f"tar -C {tree} -c . | sha256sum")
        )
        rows.append(("write none  (tar | sha256sum)", t_ours, t_peer))

        target = work / "target"

        def fresh() -> None:
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            os.sync()  # the previous run's dirty pages are not the next run's cost

        def apply_plain() -> None:
            with layer_tar.open("rb") as f:
                apply_layer(f, target)

        def apply_gz() -> None:
            with layer_gz.open("rb") as f, open_uncompressed(f) as tar:
                apply_layer(tar, target)

        t_ours, t_peer = race(args.runs, apply_plain, lambda: sh(f"tar -x -f {layer_tar} -C {target}"), fresh)
        rows.append(("apply tar   (tar -x)", t_ours, t_peer))
        t_ours, t_peer = race(args.runs, apply_gz, lambda: sh(f"tar -xz -f {layer_gz} -C {target}"), fresh)
        rows.append(("apply gzip  (tar -xz)", t_ours, t_peer))

        mb = tar_size / 1e6
        print(
            f"tree: {args.small} small files + {args.large} x {args.large_mib} MiB; layer tar {mb:.1f} MB; "
            f"gzip via {'isal' if HAVE_ISAL else 'zlib'}; best of {args.runs}; {os.cpu_count()} CPUs; "
            f"in {args.dir}"
        )
        print(
            f"{'operation (peer)':40} {'forklift wall':>20} {'peer wall':>20} {'ratio':>6}"
            f" {'cpu ours':>8} {'cpu peer':>8} {'ratio':>6}"
        )
        for name, ours, peer in rows:
            ours_col = f"{ours.wall:6.3f}s {mb / ours.wall:6.0f}MB/s"
            peer_col = f"{peer.wall:6.3f}s {mb / peer.wall:6.0f}MB/s"
            print(
                f"{name:40} {ours_col:>20} {peer_col:>20} {ours.wall / peer.wall:5.2f}x"
                f" {ours.cpu:7.2f}s {peer.cpu:7.2f}s {ours.cpu / peer.cpu:5.2f}x"
            )
        print(
            f"load average at the end: {os.getloadavg()[0]:.1f} "
            "(wall-clock ratios are noisy when it exceeds the CPU count)"
        )
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
