"""The step cache: step inputs -> a cache key -> the step's result, persisted in the store.

Layout under ``<store root>/cache/`` (``StoreLayout`` names each directory; every file written to
a temp name and renamed, so a reader never sees half a record; an unreadable record is a miss):

- ``steps/<key hex>.json``: one step result (``format.entry_json``). A layer may be lazy
  (``data.layer_source``): its content is the snapshot ``<store>/snapshots/<diff_id>`` and its blob
  is written only when an image containing it is stored; a hit needs the blob or that snapshot.
- ``positions/<hash>.json``: the inputs last seen at a step position (context + Dockerfile +
  stage + step index), used to explain the next miss at that position (``explain``).
- ``memo/``, ``from/``, ``context-stat/``: the whole-build memo (``memo``), the ``COPY --from``
  memo (``copy_memo``) and the context's stat cache (``execute.context``).
"""

from __future__ import annotations

import json
from pathlib import Path

from forklift.execute.cache.format import (
    CacheRecord,
    StepInputs,
    StepPosition,
    entry_json,
    record_from_json,
)
from forklift.fsatomic import atomic_write
from forklift.oci.storelayout import StoreLayout


class BuildCache:
    """The persistent step cache of one store. Safe to share between threads and processes."""

    def __init__(self, store_root: Path) -> None:
        self.layout = StoreLayout(store_root)
        self.root = self.layout.cache

    def _step_path(self, key: str) -> Path:
        return self.layout.cache_steps / (key.split(":", 1)[-1] + ".json")

    def get(self, key: str) -> CacheRecord | None:
        """The record stored under ``key``, or None (missing or unreadable)."""
        try:
            return record_from_json(key, json.loads(self._step_path(key).read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def get_entry(self, key: str) -> tuple[CacheRecord, StepInputs] | None:
        """The record stored under ``key`` and the inputs that made it, or None (missing, unreadable,
        or inputs that do not make ``key``: such a record is never exported)."""
        try:
            doc = json.loads(self._step_path(key).read_text())
            record = record_from_json(key, doc)
            inputs = StepInputs.from_json(doc["inputs"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if inputs.key() != key:
            return None
        return record, inputs

    def put(self, record: CacheRecord, inputs: StepInputs) -> None:
        """Store ``record`` (atomically; a concurrent writer of the same key writes the same thing)."""
        doc = entry_json(record, inputs)
        atomic_write(
            self._step_path(record.key), json.dumps(doc, sort_keys=True), durable=False, parents=True
        )

    def last_inputs(self, position: StepPosition) -> StepInputs | None:
        """The inputs last recorded at ``position``, or None."""
        try:
            return StepInputs.from_json(
                json.loads((self.layout.cache_positions / position.file_name()).read_text())
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remember(self, position: StepPosition, inputs: StepInputs) -> None:
        """Record ``inputs`` as the latest seen at ``position``."""
        path = self.layout.cache_positions / position.file_name()
        atomic_write(path, json.dumps(inputs.to_json(), sort_keys=True), durable=False, parents=True)

    def layer_digests(self) -> set[str]:
        """Every layer blob some cache record needs (``forklift prune`` keeps them)."""
        out: set[str] = set()
        steps = self.layout.cache_steps
        if not steps.is_dir():
            return out
        for p in steps.glob("*.json"):
            try:
                layer = json.loads(p.read_text()).get("layer")
            except (OSError, ValueError):
                continue
            if layer:
                out.add(str(layer["digest"]))
        return out
