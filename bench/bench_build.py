"""Build benchmark: forklift next to BuildKit on the peers' Dockerfiles, in one run.

Uses ../shared/peers as is: the bases from make-bases.sh (/tmp/anchors/bases/{busybox,debian}.tar,
loaded into a forklift store of its own), the contexts (ctx-multistage, and make-bigctx.sh's
5,000-file 212 MB context), and the Dockerfiles with ``--build-arg BASE_REG=anchors``. BuildKit is
the dockerd that ``../shared/peers/run-buildkit.sh start`` runs; without it forklift is timed
alone, the table says the peer was unavailable and the ratios use the figures the peers README
measured on this machine.

Scenarios (definitions of ../shared/peers/README.md):
  multistage cold (--no-cache, apt included), warm (nothing changed), touched (hello.c's content
  changed before each run); parallel (three ``sleep 2`` stages, --no-cache) against its longest
  stage; bigctx cold (--no-cache), warm, touched (pkg00/f000.txt's content changed).

Runs of the two builders alternate, so the load other work puts on this machine falls on both.
Each cell is the median of --runs runs (cold multistage: --cold-runs, it downloads gcc). The
table goes to stdout and, with every run's time, to bench/results/build.{txt,json} (the latest)
and build-<UTC time>.{txt,json}. Concurrent runs wait for each other (a lock in --work).

    .venv/bin/python bench/bench_build.py [--runs 5] [--cold-runs 1] [--skip-cold] [--skip-bigctx]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# bench/ is not a package: its modules import each other by path.
from peers import (
    DEFAULT_DOCKER_HOST,
    Builder,
    Timing,
    buildkit_available,
    buildkit_builder,
    buildkit_version,
    forklift_builder,
    timed_run,
)

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO.parent / "shared" / "peers"
RESULTS = REPO / "bench" / "results"
BASES = Path(os.environ.get("BASES", "/tmp/anchors/bases"))
# BuildKit (overlay2) as measured on this machine by the peers README (used when dockerd is down).
README_BUILDKIT = {
    "multistage cold": 7.56,
    "multistage warm": 0.09,
    "multistage touched": 0.37,
    "parallel cold": 2.63,
    "bigctx cold": 2.27,
    "bigctx warm": 0.25,
    "bigctx touched": 2.26,
}
PARALLEL_LONGEST_STAGE = 2.0  # each stage is `sleep 2` plus 20 MB of urandom
PARALLEL_TARGET = 1.15


@dataclass
class Cell:
    """One scenario: every run's timing per builder."""

    name: str
    runs: dict[str, list[Timing]] = field(default_factory=dict)

    def median_wall(self, builder: str) -> float | None:
        """Median wall seconds of ``builder``'s runs, None when it did not run."""
        times = self.runs.get(builder)
        return statistics.median(t.wall for t in times) if times else None

    def median_cpu(self, builder: str) -> float | None:
        """Median CPU seconds (user + system of the process tree)."""
        times = self.runs.get(builder)
        return statistics.median(t.cpu for t in times) if times else None


def append_line(path: Path) -> Callable[[], None]:
    """A 'touch' that changes ``path``'s content (an mtime change alone invalidates no builder)."""

    def touch() -> None:
        with path.open("a") as f:
            f.write(f"/* {time.time_ns()} */\n")

    return touch


def measure(
    cell: Cell,
    builders: list[Builder],
    argv_for: Callable[[Builder], list[str]],
    runs: int,
    before: Callable[[], None] | None = None,
    warmup: bool = False,
) -> Cell:
    """Time ``runs`` runs per builder, alternating builders; ``before`` runs untimed before each."""
    if warmup:
        for b in builders:
            timed_run(argv_for(b), b.env)
    for _ in range(runs):
        for b in builders:
            if before is not None:
                before()
            t = timed_run(argv_for(b), b.env)
            cell.runs.setdefault(b.name, []).append(t)
            print(f"    {cell.name:20s} {b.name:9s} {t.wall:7.2f} s", file=sys.stderr, flush=True)
    return cell


def prepare_store(forklift: Path, root: Path) -> None:
    """Load the peers' bases into ``root`` unless they are there already."""
    listed = subprocess.run(
        [str(forklift), "--root", str(root), "images"], capture_output=True, text=True, check=True
    ).stdout
    for name in ("busybox", "debian"):
        if f"anchors/{name} " not in listed:
            tar = BASES / f"{name}.tar"
            if not tar.exists():
                sys.exit(f"{tar} is missing: run ../shared/peers/make-bases.sh first")
            subprocess.run([str(forklift), "--root", str(root), "load", "-i", str(tar)], check=True)


def prepare_contexts(work: Path) -> tuple[Path, Path]:
    """Fresh copies of the multistage context and the big context (the touched runs edit them)."""
    ms = work / "ctx-ms"
    shutil.rmtree(ms, ignore_errors=True)
    shutil.copytree(PEERS / "ctx-multistage", ms)
    big = work / "ctx-big"
    subprocess.run([str(PEERS / "make-bigctx.sh"), str(big)], check=True, stdout=subprocess.DEVNULL)
    return ms, big


def ratio(ours: float | None, theirs: float | None) -> str:
    """forklift / BuildKit, formatted."""
    if ours is None or not theirs:
        return "-"
    return f"{ours / theirs:.2f}x"


def render(cells: list[Cell], peer_live: bool, extra_lines: list[str]) -> str:
    """The result table (Markdown)."""
    peer_col = "BuildKit (this run)" if peer_live else "BuildKit (README, peer unavailable)"
    lines = [
        f"| scenario | forklift s (median) | forklift CPU s | {peer_col} s | ratio forklift/BuildKit |"
        " BuildKit README s |",
        "|---|---|---|---|---|---|",
    ]
    for c in cells:
        ours = c.median_wall("forklift")
        theirs = c.median_wall("buildkit") if peer_live else README_BUILDKIT.get(c.name)
        cpu = c.median_cpu("forklift")
        readme = README_BUILDKIT.get(c.name)
        lines.append(
            f"| {c.name} | {fmt(ours)} | {fmt(cpu)} | {fmt(theirs)} | {ratio(ours, theirs)} | {fmt(readme)} |"
        )
    return "\n".join([*lines, "", *extra_lines]) + "\n"


def tree_version() -> str:
    """The commit benchmarked, and whether forklift's sources differ from it (others edit them)."""
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"], capture_output=True, text=True
    )
    edited = len(dirty.stdout.splitlines())
    return head.stdout.strip() + (f" + {edited} uncommitted file(s) under src/" if edited else "")


def fmt(value: float | None) -> str:
    """Seconds with two decimals, or '-'."""
    return "-" if value is None else f"{value:.2f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="timed runs per warm/touched/parallel cell")
    p.add_argument("--cold-runs", type=int, default=1, help="timed runs of the cold multistage build (apt)")
    p.add_argument("--skip-cold", action="store_true", help="skip the cold multistage build")
    p.add_argument("--skip-bigctx", action="store_true")
    p.add_argument("--skip-parallel", action="store_true")
    p.add_argument("--no-peer", action="store_true", help="time forklift alone")
    p.add_argument("--work", type=Path, default=Path("/tmp/forklift-bench"), help="contexts and store")
    p.add_argument("--forklift", type=Path, default=REPO / ".venv" / "bin" / "forklift")
    p.add_argument("--docker-host", default=os.environ.get("BENCH_DOCKER_HOST", DEFAULT_DOCKER_HOST))
    p.add_argument("--results", type=Path, default=RESULTS, help="where build.{txt,json} go")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run every scenario for both builders and write the table."""
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    # One benchmark at a time: two runs would share the contexts and the machine, and skew both.
    lock = open(args.work / ".lock", "w")  # noqa: SIM115 - held until the process exits
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another benchmark holds {args.work}/.lock; waiting for it", file=sys.stderr)
        fcntl.flock(lock, fcntl.LOCK_EX)
    store = args.work / "store"
    # Byte-code up to date first, so no timed run pays for compiling an edited module.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src" / "forklift")], check=False,
                   env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""})  # fmt: skip
    prepare_store(args.forklift, store)
    ms, big = prepare_contexts(args.work)

    builders = [forklift_builder(args.forklift, store, "anchors")]
    why_not = "disabled (--no-peer)" if args.no_peer else None
    if why_not is None:
        why_not = buildkit_available(args.docker_host, ("anchors/busybox:latest", "anchors/debian:latest"))
    peer_live = why_not is None
    if peer_live:
        builders.append(buildkit_builder(args.docker_host, "anchors"))
    print(f"peer: {buildkit_version(args.docker_host) if peer_live else 'unavailable: ' + str(why_not)}",
          file=sys.stderr)  # fmt: skip

    ms_df = PEERS / "Dockerfile.multistage"
    par_df = PEERS / "Dockerfile.parallel"
    big_df = PEERS / "Dockerfile.bigctx"
    cells: list[Cell] = []
    extra: list[str] = []

    def run(
        name: str,
        df: Path,
        ctx: Path,
        runs: int,
        *flags: str,
        before: Callable[[], None] | None = None,
        warmup: bool = False,
        only_forklift: bool = False,
    ) -> Cell:
        chosen = builders[:1] if only_forklift else builders
        cell = measure(Cell(name), chosen, lambda b: b.argv(df, ctx, *flags), runs, before, warmup)
        cells.append(cell)
        return cell

    # The multistage warm/touched cells need a built cache: the cold cell (or a first build) makes it.
    if not args.skip_cold:
        run("multistage cold", ms_df, ms, args.cold_runs, "--no-cache", "-t", "bench-ms")
    run("multistage warm", ms_df, ms, args.runs, "-t", "bench-ms", warmup=True)
    run("multistage touched", ms_df, ms, args.runs, "-t", "bench-ms", before=append_line(ms / "hello.c"))

    if not args.skip_parallel:
        par = run("parallel cold", par_df, ms, args.runs, "--no-cache", "-t", "bench-par")
        single = run("parallel one stage", par_df, ms, args.runs, "--no-cache", "--target", "a")
        for b in builders:
            whole, one = par.median_wall(b.name), single.median_wall(b.name)
            assert whole is not None and one is not None
            extra.append(
                f"parallel, {b.name}: {whole / PARALLEL_LONGEST_STAGE:.2f}x the 2 s stage, "
                f"{whole / one:.2f}x its own one-stage build (target <= {PARALLEL_TARGET}x)"
            )
        # forklift's default is one stage per CPU (2 here) while BuildKit runs all three at once.
        jobs3 = ("--no-cache", "--jobs", "3")
        par3 = run("parallel --jobs 3", par_df, ms, args.runs, *jobs3, only_forklift=True)
        one = single.median_wall("forklift")
        whole3 = par3.median_wall("forklift")
        assert one is not None and whole3 is not None
        extra.append(
            f"parallel --jobs 3, forklift: {whole3 / PARALLEL_LONGEST_STAGE:.2f}x the 2 s stage, "
            f"{whole3 / one:.2f}x its own one-stage build"
        )

    if not args.skip_bigctx:
        run("bigctx cold", big_df, big, args.runs, "--no-cache", "-t", "bench-big")
        run("bigctx warm", big_df, big, args.runs, "-t", "bench-big", warmup=True)
        run("bigctx touched", big_df, big, args.runs, "-t", "bench-big",
            before=append_line(big / "pkg00" / "f000.txt"))  # fmt: skip

    command = "bench/bench_build.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = [
        f"# forklift vs BuildKit, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"command: .venv/bin/python {command.strip()}",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        f"tree: {tree_version()}",
        f"peer: {buildkit_version(args.docker_host) if peer_live else 'unavailable: ' + str(why_not)}",
        "",
    ]
    table = "\n".join(header) + render(cells, peer_live, extra)
    print(table)
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M", time.gmtime())
    (args.results / "build.txt").write_text(table)
    (args.results / f"build-{stamp}.txt").write_text(table)
    record = {
        "command": command.strip(),
        "tree": tree_version(),
        "peer_live": peer_live,
        "peer": why_not or buildkit_version(args.docker_host),
        "cells": [
            {"name": c.name, "runs": {k: [asdict(t) for t in v] for k, v in c.runs.items()}} for c in cells
        ],
        "notes": extra,
    }
    (args.results / "build.json").write_text(json.dumps(record, indent=1) + "\n")
    (args.results / f"build-{stamp}.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
