"""The build cache: step inputs -> a cache key -> the step's result, persisted in the store.

Layout under ``<store root>/cache/`` (every file written to a temp name and renamed, so a reader
never sees half a record; an unreadable record is simply a miss):

- ``steps/<key hex>.json``: one step result: the layer it produced (or none for a metadata-only
  step), the history timestamp to reuse (so a fully cached rebuild gives the same image ID),
  op-specific data, and the inputs that made the key. A layer may be lazy (``data.layer_source``):
  its content is the snapshot ``<store>/snapshots/<diff_id>`` and its blob is written only when
  an image containing it is stored; a hit needs the blob or that snapshot.
- ``memo/<key>.json``: whole-build results (see ``execute.memo``); ``from/<hash>.json``: source
  digests of ``COPY --from=<stage>`` by stage identity; ``context-stat/``: the stat cache.
- ``positions/<hash>.json``: the inputs last seen at a step position (context + Dockerfile +
  stage + step index), used to explain the next miss at that position: which file, which
  argument, which option, or the parent changed.

The key is ``sha256`` over the parent's identity, the expanded instruction, the ARG/ENV values the
step can see, the digests of every source set a COPY/ADD reads, and the metadata that ends up in
the layer (ownership, modes, options). Secret values never enter it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from forklift.records import record

CACHE_VERSION = "forklift-cache-v1"


@record
class SourceDigest:
    """The digest of one source set a step reads, with per-entry digests to explain a change."""

    label: str  # e.g. "context src/" or "stage builder /out"
    digest: str
    files: tuple[tuple[str, str], ...] = ()  # (relpath, digest of that entry's line)


@record
class StepInputs:
    """Everything a step's result depends on."""

    parent: str  # identity of the state the step starts from
    instruction: str  # the instruction after expansion, as it is recorded
    env: tuple[tuple[str, str], ...] = ()  # ARG and ENV values visible to the step, sorted
    sources: tuple[SourceDigest, ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()  # options that change the result (chown, network, ...)

    def key(self) -> str:
        """The cache key: a sha256 over every input (per-file digests enter through set digests)."""
        doc = {
            "v": CACHE_VERSION,
            "parent": self.parent,
            "instruction": self.instruction,
            "env": [list(p) for p in self.env],
            "sources": [[s.label, s.digest] for s in self.sources],
            "metadata": [list(p) for p in self.metadata],
        }
        return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form (for the record files)."""
        return {
            "parent": self.parent,
            "instruction": self.instruction,
            "env": [list(p) for p in self.env],
            "sources": [
                {"label": s.label, "digest": s.digest, "files": [list(f) for f in s.files]}
                for s in self.sources
            ],
            "metadata": [list(p) for p in self.metadata],
        }

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> StepInputs:
        """The inverse of ``to_json``."""
        return StepInputs(
            parent=str(doc["parent"]),
            instruction=str(doc["instruction"]),
            env=tuple((str(k), str(v)) for k, v in doc.get("env", [])),
            sources=tuple(
                SourceDigest(
                    str(s["label"]), str(s["digest"]), tuple((str(a), str(b)) for a, b in s.get("files", []))
                )
                for s in doc.get("sources", [])
            ),
            metadata=tuple((str(k), str(v)) for k, v in doc.get("metadata", [])),
        )


@record
class LayerRef:
    """A layer blob in the store."""

    digest: str
    diff_id: str
    size: int
    media_type: str


@record
class CacheRecord:
    """The result of a step: its layer (or none), its history timestamp, op-specific data."""

    key: str
    created: str
    layer: LayerRef | None = None
    data: Mapping[str, str] = field(default_factory=dict)


@record
class StepPosition:
    """Where a step sits, stable across builds: used only to explain misses."""

    scope: str  # the build's identity: context directory and Dockerfile path
    stage: str
    index: int

    def file_name(self) -> str:
        """The file name of this position's record."""
        raw = f"{self.scope}\0{self.stage}\0{self.index}".encode()
        return hashlib.sha256(raw).hexdigest()[:40] + ".json"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class BuildCache:
    """The persistent step cache of one store. Safe to share between threads and processes."""

    def __init__(self, store_root: Path) -> None:
        self.root = store_root / "cache"

    def _step_path(self, key: str) -> Path:
        return self.root / "steps" / (key.split(":", 1)[-1] + ".json")

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
        _write_atomic(self._step_path(record.key), json.dumps(doc, sort_keys=True))

    def last_inputs(self, position: StepPosition) -> StepInputs | None:
        """The inputs last recorded at ``position``, or None."""
        try:
            return StepInputs.from_json(
                json.loads((self.root / "positions" / position.file_name()).read_text())
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remember(self, position: StepPosition, inputs: StepInputs) -> None:
        """Record ``inputs`` as the latest seen at ``position``."""
        _write_atomic(
            self.root / "positions" / position.file_name(), json.dumps(inputs.to_json(), sort_keys=True)
        )

    def layer_digests(self) -> set[str]:
        """Every layer blob some cache record needs (``forklift prune`` keeps them)."""
        out: set[str] = set()
        steps = self.root / "steps"
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


def entry_json(record: CacheRecord, inputs: StepInputs) -> dict[str, Any]:
    """A record and its inputs as a step file (and a cache export's entry, plus its key) holds them."""
    layer = record.layer
    return {
        "created": record.created,
        "layer": None
        if layer is None
        else {
            "digest": layer.digest,
            "diff_id": layer.diff_id,
            "size": layer.size,
            "media_type": layer.media_type,
        },
        "data": dict(record.data),
        "inputs": inputs.to_json(),
    }


def record_from_json(key: str, doc: Mapping[str, Any]) -> CacheRecord:
    """The record ``entry_json`` wrote for ``key`` (KeyError/TypeError/ValueError when malformed)."""
    layer = doc.get("layer")
    ref = None
    if layer:
        ref = LayerRef(
            str(layer["digest"]), str(layer["diff_id"]), int(layer["size"]), str(layer["media_type"])
        )
    return CacheRecord(
        key=key,
        created=str(doc["created"]),
        layer=ref,
        data={str(k): str(v) for k, v in dict(doc.get("data") or {}).items()},
    )


def _short(value: str, limit: int = 40) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def explain_miss(
    previous: StepInputs | None, current: StepInputs, *, parent_reason: str | None = None
) -> str:
    """Why ``current`` missed, compared with the inputs last seen at the same position.

    ``parent_reason`` is what the caller knows about a changed parent ("step 3 re-ran", "base
    image changed"); it is used when the parent is what differs.
    """
    if previous is None:
        return "not built before"
    reasons: list[str] = []
    if previous.instruction != current.instruction:
        reasons.append(f"instruction changed (was {_short(previous.instruction)!r})")
    old_env, new_env = dict(previous.env), dict(current.env)
    for name in sorted(set(old_env) | set(new_env)):
        if name not in old_env:
            reasons.append(f"argument {name} added ({_short(new_env[name])!r})")
        elif name not in new_env:
            reasons.append(f"argument {name} removed")
        elif old_env[name] != new_env[name]:
            reasons.append(
                f"argument {name} changed ({_short(old_env[name])!r} -> {_short(new_env[name])!r})"
            )
    old_src = {s.label: s for s in previous.sources}
    for src in current.sources:
        before = old_src.get(src.label)
        if before is None:
            reasons.append(f"new source {src.label}")
        elif before.digest != src.digest:
            reasons.append(_files_changed(src, before))
    for label in old_src:
        if label not in {s.label for s in current.sources}:
            reasons.append(f"source {label} no longer read")
    old_meta, new_meta = dict(previous.metadata), dict(current.metadata)
    for name in sorted(set(old_meta) | set(new_meta)):
        if old_meta.get(name) != new_meta.get(name):
            reasons.append(f"option {name} changed")
    if previous.parent != current.parent:
        reasons.append(parent_reason or "parent changed")
    if not reasons:
        return "cache entry missing (pruned or never stored)"
    return "; ".join(reasons)


def _files_changed(now: SourceDigest, before: SourceDigest) -> str:
    old, new = dict(before.files), dict(now.files)
    changed = sorted(p for p in new if p in old and old[p] != new[p])
    added = sorted(p for p in new if p not in old)
    removed = sorted(p for p in old if p not in new)
    parts: list[str] = []
    for verb, paths in (("changed", changed), ("added", added), ("removed", removed)):
        if not paths:
            continue
        shown = ", ".join(p or "." for p in paths[:3])
        more = f" (+{len(paths) - 3} more)" if len(paths) > 3 else ""
        noun = "file" if len(paths) == 1 else "files"
        parts.append(f"{noun} {shown}{more} {verb}")
    if not parts:
        return f"source {now.label} changed"
    return f"{now.label}: " + ", ".join(parts)
