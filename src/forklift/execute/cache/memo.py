"""The whole-build memo: a rebuild whose inputs did not change reuses the previous result at once.

A cached rebuild still has to prove that nothing changed; step by step that costs parsing, planning
and a cache lookup per step. The memo proves it in one go: it is keyed by everything the build was
asked (Dockerfile and .dockerignore bytes, targets, build args, labels, platform, ...) and records
what the build read: the stat signature of every context path it looked at (files, and directories
it listed, so an added file is seen), the store's reference file, and the blobs of the result. When
all of that is unchanged, the result is the same image, so the memo's answer is returned without
importing the planner or the engine.

Kept under ``<store root>/cache/memo/<key>.json`` (``StoreLayout.build_memo``), written
atomically; anything unreadable or stale simply sends the build down the normal path. Light
imports only: this runs on every build.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forklift.oci.storelayout import StoreLayout

if TYPE_CHECKING:
    from forklift.report.progress import EventSink

MEMO_VERSION = 1
_RACY_SECONDS = 0.1


def memo_key(parts: Mapping[str, Any]) -> str:
    """The memo key of a build request (a sha256 over its canonical JSON)."""
    raw = json.dumps({"v": MEMO_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def request_key(request: Mapping[str, Any], *, context: Path, dockerfile: Path, text: str) -> str:
    """The memo key of a build request: ``request`` (the options that shape the result, and the
    forklift version) plus the context and Dockerfile paths, the Dockerfile ``text`` and the bytes
    of the .dockerignore files that could apply (``<Dockerfile>.dockerignore``, ``CONTEXT/.dockerignore``)."""
    ignores: list[str | None] = []
    for candidate in (dockerfile.with_name(dockerfile.name + ".dockerignore"), context / ".dockerignore"):
        try:
            ignores.append(candidate.read_text())
        except OSError:
            ignores.append(None)
    paths = {"context": str(context), "dockerfile": str(dockerfile.resolve())}
    return memo_key({**paths, "text": text, "ignores": ignores, **request})


def replay_steps(doc: Mapping[str, Any], events: EventSink) -> int:
    """Report every step the remembered build ran as cached; returns how many there were."""
    from forklift.report.progress import StepCached, StepDone, StepStarted

    titles = doc["titles"]
    for vertex, title in enumerate(titles, start=1):
        events(StepStarted(vertex, title))
        events(StepCached(vertex))
        events(StepDone(vertex, 0.0, cached=True))
    return len(titles)


def _signature(path: Path) -> list[int]:
    try:
        st = os.lstat(path)
    except OSError:
        return []
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def _path(layout: StoreLayout, key: str) -> Path:
    return layout.build_memo / f"{key}.json"


def load_valid(store_root: Path, key: str, context: Path) -> dict[str, Any] | None:
    """The memo for ``key`` if everything it recorded is unchanged, else None."""
    layout = StoreLayout(store_root)
    try:
        doc: dict[str, Any] = json.loads(_path(layout, key).read_text())
        if _signature(layout.refs) != doc["refs"]:
            return None
        for digest in doc["blobs"]:
            algo, _, hexpart = str(digest).partition(":")
            if not layout.blob(algo, hexpart).is_file():
                return None
        reads: dict[str, Any] = doc["reads"]
        if "" in reads and _signature(context) != reads[""]:
            return None
        # Thousands of reads in a big context: stat relative to an open directory, with str paths
        # (a pathlib join per read cost about 3x as much).
        fd = os.open(context, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for rel, sig in reads.items():
                if rel and _signature_at(fd, rel) != sig:
                    return None
        finally:
            os.close(fd)
        return doc
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _signature_at(dir_fd: int, rel: str) -> list[int]:
    try:
        st = os.stat(rel, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return []
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def save(store_root: Path, key: str, doc: dict[str, Any], reads: Mapping[str, list[int]]) -> bool:
    """Record a build's result; skipped (False) when a read path changed too recently to trust."""
    now = time.time_ns()
    for sig in reads.values():
        if sig and now - max(sig[1], sig[3]) < _RACY_SECONDS * 1e9:
            return False
    from forklift.fsatomic import atomic_write  # after a full build only: not on the fast path

    layout = StoreLayout(store_root)
    full = {**doc, "refs": _signature(layout.refs), "reads": dict(reads)}
    atomic_write(_path(layout, key), json.dumps(full, sort_keys=True), durable=False, parents=True)
    return True
