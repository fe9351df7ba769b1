"""Which cache entries a build used: each stage's keys (``StageCacheKeys``), the ones an export
takes (``select_keys``), and ``RecordingBuildCache``, a ``BuildCache`` that notes them for callers
that drive the engine without its results."""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from pathlib import Path

from forklift.execute.cache.format import CacheRecord, StepInputs, StepPosition
from forklift.execute.cache.specs import CacheMode
from forklift.execute.cache.steps import BuildCache
from forklift.records import record


@record
class StageCacheKeys:
    """The cache keys one stage of a build used, in step order, and whether the stage is a target."""

    stage: str
    keys: tuple[str, ...]
    final: bool = False


def select_keys(stages: Sequence[StageCacheKeys], mode: CacheMode) -> list[str]:
    """The keys to export, in order, each once: the final stages' (``min``) or every stage's (``max``)."""
    out: dict[str, None] = {}
    for stage in stages:
        if mode == "max" or stage.final:
            out.update(dict.fromkeys(stage.keys))
    return list(out)


class RecordingBuildCache(BuildCache):
    """A ``BuildCache`` that notes which keys each stage looked up or stored.

    The engine calls ``get(key)`` and then ``last_inputs(position)`` for every step (``put`` after,
    on a miss), from the thread running the stage; a per-thread pending key ties each key to its
    stage. Build with it and call ``stage_keys`` afterwards for ``export_cache``.
    """

    def __init__(self, store_root: Path) -> None:
        super().__init__(store_root)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._by_stage: dict[str, dict[str, None]] = {}

    def _note(self, stage: str, key: str) -> None:
        with self._lock:
            self._by_stage.setdefault(stage, {})[key] = None

    def get(self, key: str) -> CacheRecord | None:
        """``BuildCache.get``, remembering ``key`` for the stage asking next."""
        self._local.pending = key
        return super().get(key)

    def last_inputs(self, position: StepPosition) -> StepInputs | None:
        """``BuildCache.last_inputs``; binds the pending key to ``position``'s stage."""
        self._local.stage = position.stage
        pending = getattr(self._local, "pending", None)
        if pending is not None:
            self._note(position.stage, pending)
            self._local.pending = None
        return super().last_inputs(position)

    def put(self, record: CacheRecord, inputs: StepInputs) -> None:
        """``BuildCache.put``, noting the key for the stage this thread is running."""
        super().put(record, inputs)
        stage = getattr(self._local, "stage", None)
        if stage is not None:
            self._note(stage, record.key)

    def used_keys(self) -> dict[str, tuple[str, ...]]:
        """Stage name -> the keys it used, in the order the steps ran."""
        with self._lock:
            return {stage: tuple(keys) for stage, keys in self._by_stage.items()}

    def stage_keys(self, final_stages: Collection[str]) -> tuple[StageCacheKeys, ...]:
        """What ``export_cache`` takes: every stage's keys, those named in ``final_stages`` final."""
        return tuple(
            StageCacheKeys(stage, keys, final=stage in final_stages)
            for stage, keys in self.used_keys().items()
        )
