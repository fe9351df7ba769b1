"""The build cache between machines, as tasks of one build: ``--cache-from`` and ``--cache-to``.

``parse_cache_specs`` checks the specs before any work. ``import_cache_from`` brings an export's
entries into the local cache before the stages run (a missing cache only warns);
``export_cache_to`` writes the steps this build used (``stage_cache_keys``) after the targets are
written (``ignore-error=true`` turns a failure into a warning). Each is reported as a progress
vertex of its own, which a memo replay does not repeat. The transfer itself is
``execute.cache.remote``; it is imported only when a spec is given.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from forklift.errors import ForkliftError
from forklift.report.progress import EventSink, StepDone, StepStarted

if TYPE_CHECKING:
    from forklift.execute.cache.recording import StageCacheKeys
    from forklift.execute.cache.specs import CacheDestination, CacheSource
    from forklift.execute.engine import BuildEnv, StageResult


def parse_cache_specs(
    cache_to: tuple[str | CacheDestination, ...], cache_from: tuple[str | CacheSource, ...]
) -> tuple[list[CacheDestination], list[CacheSource]]:
    """``cache_to`` and ``cache_from`` parsed (ForkliftError for a bad spec); none: nothing imported."""
    if not cache_to and not cache_from:
        return [], []
    from forklift.execute.cache.specs import parse_cache_from, parse_cache_to

    to = [parse_cache_to(d) if isinstance(d, str) else d for d in cache_to]
    sources = [parse_cache_from(s) if isinstance(s, str) else s for s in cache_from]
    return to, sources


def stage_cache_keys(results: Mapping[str, StageResult], finals: set[str]) -> list[StageCacheKeys]:
    """What ``export_cache`` takes: each built stage's step keys (stage order), the targets final."""
    from forklift.execute.cache.recording import StageCacheKeys

    ordered = sorted(results.values(), key=lambda r: r.index)
    return [StageCacheKeys(r.name, r.keys, final=r.name in finals) for r in ordered]


def _task_events(env: BuildEnv, events: EventSink, title: str) -> tuple[int, float]:
    """Start a progress vertex for an internal task (not a step: the memo does not replay it)."""
    vertex = env.next_vertex()
    events(StepStarted(vertex, title))
    return vertex, time.monotonic()


def import_cache_from(
    env: BuildEnv, source: CacheSource, insecure: frozenset[str], events: EventSink
) -> None:
    """``--cache-from``: the export's entries into the local cache (a missing cache is a warning)."""
    from forklift.execute.cache.remote import import_cache
    from forklift.oci.registry.client import RegistryOptions
    from forklift.report.progress import StepFailed, StepLog

    where = str(source.ref) if source.type == "registry" else f"{source.src}"
    vertex, started = _task_events(env, events, f"importing cache from {where}")
    try:
        registry = RegistryOptions(insecure_registries=insecure)
        result = import_cache(env.store, source, registry_options=registry)
    except (ForkliftError, OSError) as err:
        message = err.message if isinstance(err, ForkliftError) else str(err)
        events(StepFailed(vertex, time.monotonic() - started, message))
        hint = err.hint if isinstance(err, ForkliftError) else None
        raise ForkliftError(f"--cache-from {where}: {message}", hint=hint) from None
    if not result.found:
        events(StepLog(vertex, f"WARNING: no cache at {result.location}: building without it\n"))
    else:
        events(
            StepLog(
                vertex,
                f"{result.entries} entries imported, {result.kept} already here, "
                f"{result.layers_fetched} blobs fetched\n",
            )
        )
    events(StepDone(vertex, time.monotonic() - started))


def export_cache_to(
    env: BuildEnv,
    stage_keys: list[StageCacheKeys],
    destination: CacheDestination,
    insecure: frozenset[str],
    events: EventSink,
) -> None:
    """``--cache-to``: export the steps this build used; with ``ignore-error=true`` a failure warns."""
    from forklift.execute.cache.remote import export_cache
    from forklift.oci.registry.client import RegistryOptions
    from forklift.report.progress import StepFailed, StepLog

    where = str(destination.ref) if destination.type == "registry" else str(destination.dest)
    vertex, started = _task_events(env, events, f"exporting cache to {where} (mode={destination.mode})")
    try:
        result = export_cache(
            env.store, stage_keys, destination, registry_options=RegistryOptions(insecure_registries=insecure)
        )
    except (ForkliftError, OSError) as err:
        message = err.message if isinstance(err, ForkliftError) else str(err)
        if not destination.ignore_error:
            events(StepFailed(vertex, time.monotonic() - started, message))
            hint = err.hint if isinstance(err, ForkliftError) else None
            raise ForkliftError(
                f"--cache-to {where}: {message}", hint=hint or "add ignore-error=true to only warn"
            ) from None
        events(StepLog(vertex, f"WARNING: cache export to {where} failed: {message}\n"))
        events(StepDone(vertex, time.monotonic() - started))
        return
    if result.written:
        text = f"{result.entries} entries, {result.layers} layers -> {result.location} ({result.digest})\n"
    else:
        text = "WARNING: no cache entries to export\n"
    events(StepLog(vertex, text))
    events(StepDone(vertex, time.monotonic() - started))
