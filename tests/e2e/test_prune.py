"""``forklift prune`` on a store that real builds (busybox base, runc) filled, through the installed
command: what an image name or the cache needs stays, ``rmi`` + ``prune --all`` leaves nothing, and a
build running in another process meanwhile is not broken."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from forklift.execute.prune import prune_store
from forklift.execute.snapshots import leased_snapshots
from forklift.oci.store import Store

pytestmark = pytest.mark.e2e
FORKLIFT = Path(sys.executable).with_name("forklift")

TWO_STAGES = """\
FROM busybox AS build
RUN echo hello > /greeting && head -c 200000 /dev/urandom > /junk
FROM busybox
COPY --from=build /greeting /greeting
RUN cat /greeting > /copy
"""


def forklift(store: Path, *args: str) -> str:
    """Run the installed command; its stdout (stderr shown when it fails)."""
    done = subprocess.run([str(FORKLIFT), "--root", str(store), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _snapshots(store: Path) -> set[str]:
    return {p.name for p in (store / "snapshots").iterdir() if not p.name.startswith(".")}


@pytest.fixture
def store(tmp_path: Path, busybox_image: Callable[[Path], str], oci_runtime: object) -> Path:
    root = tmp_path / "store"
    busybox_image(root)
    return root


def test_prune_keeps_what_names_need_and_rmi_then_prune_all_frees_everything(
    store: Path, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(TWO_STAGES)
    forklift(store, "build", "--progress=plain", "-t", "app", str(ctx))
    built_snapshots = _snapshots(store)
    assert len(built_snapshots) == 4  # busybox, the builder's RUN, the COPY, the final RUN

    # Default: the cache keeps the builder's layer; nothing is removed.
    out = forklift(store, "prune")
    assert "Deleted 0 snapshot(s)" in out and "Deleted 0 blob(s)" in out
    assert _snapshots(store) == built_snapshots

    # --all with the name kept: only what the cache alone needed goes (the builder's RUN layer).
    out = forklift(store, "prune", "--all")
    assert "Deleted 1 snapshot(s)" in out and "Deleted 0 build records" in out
    assert len(_snapshots(store)) == 3
    ran = subprocess.run(
        [str(FORKLIFT), "--root", str(store), "run", "--rm", "app", "cat", "/copy"],
        capture_output=True,
        text=True,
    )
    assert (ran.returncode, ran.stdout) == (0, "hello\n"), ran.stderr
    assert len(_snapshots(store)) == 3

    forklift(store, "rmi", "app", "busybox")
    out = forklift(store, "prune", "--all")
    assert "Deleted 3 snapshot(s)" in out and "Deleted 0 build records" not in out
    assert _snapshots(store) == set()
    assert list(Store(store).list_blobs()) == []
    assert [p for p in (store / "buildinfo").rglob("*") if p.is_file()] == []
    assert list((store / "cache" / "steps").glob("*.json")) == []


def test_a_running_build_in_another_process_survives_prune_all(store: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    # The first RUN's layer is lazy (a snapshot, no blob): only the build's lease protects it once
    # prune --all has dropped the cache record that names it.
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo one > /one\nRUN sleep 4\nRUN cat /one > /two\n")
    build = subprocess.Popen(
        [str(FORKLIFT), "--root", str(store), "build", "--progress=plain", "-t", "slow", str(ctx)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        leases = store / "leases" / "snapshots"
        while len(leased_snapshots(leases)) < 2 and build.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        held = leased_snapshots(leases)
        assert len(held) >= 2, "the build never leased its base and first layer"
        report = prune_store(store, cache=True, cache_mounts=True)
        assert report.get("snapshots").count == 0
        assert held <= _snapshots(store)
        log, _ = build.communicate(timeout=120)
    finally:
        if build.poll() is None:
            build.kill()
            build.wait()
    assert build.returncode == 0, log
    ran = subprocess.run(
        [str(FORKLIFT), "--root", str(store), "run", "--rm", "slow", "cat", "/two"],
        capture_output=True,
        text=True,
    )
    assert (ran.returncode, ran.stdout) == (0, "one\n"), ran.stderr
    assert leased_snapshots(leases) == set()  # the build ended: its lease went with it
