"""COPY --from sources read ahead: matched and hashed on a worker while the stage's earlier steps run.

A final stage that takes three artifacts from three builders runs its COPY steps one after the
other, and each first hashes its artifact for the cache key (20 MB: ~25 ms, plus mounting the
builder's view). Those sources depend only on the builder's result and the instruction, not on
the steps before the COPY, so they are read as soon as the stage starts. Only plain cases are
read ahead: COPY (not ADD) from a stage already built, with paths that need no expansion, and
whose digests are not remembered already (a cached rebuild reads nothing).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from forklift.execute.cache import SourceDigest
from forklift.execute.context import SourceTree
from forklift.execute.engine import BuildEnv, StageResult
from forklift.plan.ops import CopyOp, Op, StageRef
from forklift.records import record


@record
class ReadSources:
    """What a COPY's sources came to: the tree (its view stays mounted until ``close``), the matches
    and their digests, for the source paths ``sources``."""

    sources: tuple[str, ...]
    tree: SourceTree
    matches: list[object]  # copy.Matched (kept opaque: copy.py imports this module)
    digests: list[SourceDigest]
    stack: contextlib.ExitStack


class CopySourceReadAhead:
    """Reads the sources of a stage's plain COPY --from steps on a worker; ``take`` hands one over."""

    def __init__(self, env: BuildEnv, ops: Iterable[Op], done: Mapping[int, StageResult]) -> None:
        self._jobs: dict[int, Future[ReadSources | None]] = {}
        wanted = [op for op in ops if isinstance(op, CopyOp) and _plain(op, env.options.escape, done)]
        self._pool = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="forklift-readahead") if wanted else None
        )
        for op in wanted:
            assert self._pool is not None
            self._jobs[id(op)] = self._pool.submit(_read, env, op, dict(done))

    def take(self, op: CopyOp) -> ReadSources | None:
        """The sources read for ``op`` (the caller closes them), or None: read them yourself."""
        job = self._jobs.pop(id(op), None)
        if job is None:
            return None
        try:
            return job.result()
        except Exception:
            return None

    def close(self) -> None:
        """Unmount what no step took (a failed or cancelled stage) and stop the worker."""
        for job in self._jobs.values():
            job.cancel()
            with contextlib.suppress(Exception):
                taken = job.result()
                if taken is not None:
                    taken.stack.close()
        self._jobs.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _plain(op: CopyOp, escape: str, done: Mapping[int, StageResult]) -> bool:
    return (
        op.instruction.keyword == "COPY"
        and isinstance(op.source, StageRef)
        and op.source.index in done
        and not op.inline
        and all("$" not in p and escape not in p for p in op.paths)
    )


def _read(env: BuildEnv, op: CopyOp, done: dict[int, StageResult]) -> ReadSources | None:
    from forklift.execute.ops.copy import from_memo_key, gather, load_from_memo, source_tree

    sources = list(op.paths)
    memo = from_memo_key(op, done, sources)
    if memo is not None and load_from_memo(env, memo) is not None:
        return None  # remembered: the step needs neither the mount nor the hashes
    stack = contextlib.ExitStack()
    try:
        tree = stack.enter_context(source_tree(env, op, done))
        matches, digests = gather(tree, op, sources)
    except BaseException:
        stack.close()
        raise
    return ReadSources(tuple(sources), tree, list(matches), digests, stack)
