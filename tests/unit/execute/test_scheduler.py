"""The scheduler: dependency order, concurrency, and clean cancellation on the first failure."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from forklift.errors import BuildError, PlanError
from forklift.execute.scheduler import Cancelled, StageTask, run_stages


def test_dependencies_run_first_and_results_flow() -> None:
    tasks = [
        StageTask("base"),
        StageTask("a", ("base",)),
        StageTask("b", ("base",)),
        StageTask("final", ("a", "b")),
    ]
    seen: list[str] = []
    lock = threading.Lock()

    def run(task: StageTask, done: Mapping[str, int], cancel: threading.Event) -> int:
        for d in task.deps:
            assert d in done
        with lock:
            seen.append(task.name)
        return sum(done[d] for d in task.deps) + 1

    results = run_stages(tasks, run, jobs=4)
    assert seen[0] == "base" and seen[-1] == "final"
    assert results == {"base": 1, "a": 2, "b": 2, "final": 5}


def test_independent_stages_overlap() -> None:
    barrier = threading.Barrier(3, timeout=5)

    def run(task: StageTask, done: Mapping[str, None], cancel: threading.Event) -> None:
        barrier.wait()  # deadlocks (and times out) unless all three run at once

    run_stages([StageTask("a"), StageTask("b"), StageTask("c")], run, jobs=3)


def test_default_jobs_run_four_stages_at_once_even_on_few_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    import forklift.execute.scheduler as scheduler

    monkeypatch.setattr(scheduler.os, "sched_getaffinity", lambda pid: {0, 1})  # a 2-CPU machine
    assert scheduler.default_jobs() == 4
    monkeypatch.setattr(scheduler.os, "sched_getaffinity", lambda pid: set(range(16)))
    assert scheduler.default_jobs() == 16
    monkeypatch.setattr(scheduler.os, "sched_getaffinity", lambda pid: {0, 1})
    barrier = threading.Barrier(4, timeout=5)

    def run(task: StageTask, done: Mapping[str, None], cancel: threading.Event) -> None:
        barrier.wait()  # times out (BrokenBarrierError) unless the default lets all four run at once

    run_stages([StageTask(n) for n in "abcd"], run)


def test_jobs_limits_concurrency() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    def run(task: StageTask, done: Mapping[str, None], cancel: threading.Event) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1

    run_stages([StageTask(str(i)) for i in range(6)], run, jobs=2)
    assert peak == 2


def test_first_failure_cancels_others_and_is_raised() -> None:
    started: list[str] = []
    stopped_by_cancel: list[str] = []

    def run(task: StageTask, done: Mapping[str, None], cancel: threading.Event) -> None:
        started.append(task.name)
        if task.name == "bad":
            raise BuildError("RUN failed", hint="x")
        for _ in range(200):  # a long stage polling between its steps
            if cancel.is_set():
                stopped_by_cancel.append(task.name)
                raise Cancelled()
            time.sleep(0.01)

    tasks = [StageTask("slow"), StageTask("bad"), StageTask("after", ("bad",))]
    with pytest.raises(BuildError, match="RUN failed"):
        run_stages(tasks, run, jobs=2)
    assert "after" not in started
    assert stopped_by_cancel == ["slow"]


def test_unknown_dependency_and_cycle_are_plan_errors() -> None:
    def run(task: StageTask, done: Mapping[str, None], cancel: threading.Event) -> None:
        raise AssertionError("must not run")

    with pytest.raises(PlanError, match="unknown stage"):
        run_stages([StageTask("a", ("zz",))], run)
    with pytest.raises(PlanError, match="a -> b -> a"):
        run_stages([StageTask("a", ("b",)), StageTask("b", ("a",))], run)


def test_an_interrupt_stops_running_stages_through_on_cancel(monkeypatch: pytest.MonkeyPatch) -> None:
    import forklift.execute.scheduler as scheduler

    stopped = threading.Event()

    def run(task: StageTask, done: Mapping[str, None], cancel: threading.Event) -> None:
        stopped.wait(5)
        if cancel.is_set():
            raise Cancelled()

    def interrupted_wait(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(scheduler, "wait", interrupted_wait)
    with pytest.raises(KeyboardInterrupt):
        run_stages([StageTask("long")], run, jobs=1, on_cancel=stopped.set)
    assert stopped.is_set()


def test_snapshots_are_filled_once_and_pruned_except_kept(tmp_path: Path) -> None:
    from forklift.execute.snapshots import SnapshotCache, snapshots_in_use

    cache = SnapshotCache(tmp_path)
    calls: list[Path] = []

    def fill(target: Path) -> None:
        calls.append(target)
        (target / "f").write_text("x")

    first = cache.ensure("sha256:aa", fill)
    assert cache.ensure("sha256:aa", fill) == first and len(calls) == 1
    scratch = cache.scratch_dir("stage")
    (scratch / "g").write_text("y")
    cache.adopt("sha256:bb", scratch)
    assert cache.has("sha256:bb") and not scratch.exists()
    assert snapshots_in_use(tmp_path) == set()
    assert cache.remove_except({"sha256:bb"}) == (0, 0)  # this object's own lease holds both
    cache.release()
    assert cache.remove_except({"sha256:bb"}) == (1, 1)
    assert not cache.has("sha256:aa") and cache.has("sha256:bb")


def test_old_scratch_dirs_of_dead_builds_are_cleaned(tmp_path: Path) -> None:
    import os

    from forklift.execute.snapshots import SnapshotCache

    cache = SnapshotCache(tmp_path)
    old, young = cache.scratch_dir("run"), cache.scratch_dir("run")
    (old / "upper").mkdir()
    os.utime(old, (1, 1))
    assert cache.clean_scratch() == 1
    assert not old.exists() and young.exists()
