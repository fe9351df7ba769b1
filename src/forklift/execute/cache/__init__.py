"""The build cache, one module per job, behind the names callers use.

- ``format``: a step's inputs, its key (``StepInputs.key``) and its result record, as JSON.
- ``steps``: the step cache of a store (``BuildCache``: ``cache/steps/`` and ``cache/positions/``).
- ``explain``: why a step missed, in words (``explain_miss``).
- ``memo``: the whole-build memo (``cache/memo/``), read before the planner is even imported.
- ``copy_memo``: the source digests of ``COPY --from=<stage>`` by stage identity (``cache/from/``).
- ``specs``: ``--cache-to``/``--cache-from`` parsed; ``recording``: which keys each stage used.
- ``document``: the export's format (an OCI artifact); ``backends``: a layout directory or a
  registry, written through ``oci.layout`` and ``oci.registry.transfer``; ``remote``: export and
  import; ``tasks``: both as progress vertices of a build.

Every path under the store comes from ``oci.storelayout.StoreLayout``. Each name loads its module
on first use: the memo's fast path (an unchanged build answered at once) imports only ``memo`` and
``tasks``, and a build that exports no cache never imports the registry client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forklift.execute.cache import copy_memo
    from forklift.execute.cache.document import (
        CACHE_ARTIFACT_TYPE,
        CACHE_CONFIG_TYPE,
        DIFF_ID_ANNOTATION,
        CacheDocument,
        CacheEntry,
        cache_manifest,
        read_cache_manifest,
    )
    from forklift.execute.cache.explain import explain_miss
    from forklift.execute.cache.format import (
        CACHE_VERSION,
        CacheRecord,
        LayerRef,
        SourceDigest,
        StepInputs,
        StepPosition,
        entry_json,
        record_from_json,
    )
    from forklift.execute.cache.recording import RecordingBuildCache, StageCacheKeys, select_keys
    from forklift.execute.cache.remote import CacheExportResult, CacheImportResult, export_cache, import_cache
    from forklift.execute.cache.specs import (
        CacheDestination,
        CacheSource,
        parse_cache_from,
        parse_cache_spec,
        parse_cache_to,
    )
    from forklift.execute.cache.steps import BuildCache
    from forklift.execute.cache.tasks import (
        export_cache_to,
        import_cache_from,
        parse_cache_specs,
        stage_cache_keys,
    )

# name -> the module that defines it (a module name alone: the submodule itself)
_LAZY = {
    "copy_memo": "",
    "CACHE_ARTIFACT_TYPE": "document",
    "CACHE_CONFIG_TYPE": "document",
    "DIFF_ID_ANNOTATION": "document",
    "CacheDocument": "document",
    "CacheEntry": "document",
    "cache_manifest": "document",
    "read_cache_manifest": "document",
    "explain_miss": "explain",
    "CACHE_VERSION": "format",
    "CacheRecord": "format",
    "LayerRef": "format",
    "SourceDigest": "format",
    "StepInputs": "format",
    "StepPosition": "format",
    "entry_json": "format",
    "record_from_json": "format",
    "RecordingBuildCache": "recording",
    "StageCacheKeys": "recording",
    "select_keys": "recording",
    "CacheExportResult": "remote",
    "CacheImportResult": "remote",
    "export_cache": "remote",
    "import_cache": "remote",
    "CacheDestination": "specs",
    "CacheSource": "specs",
    "parse_cache_from": "specs",
    "parse_cache_spec": "specs",
    "parse_cache_to": "specs",
    "BuildCache": "steps",
    "export_cache_to": "tasks",
    "import_cache_from": "tasks",
    "parse_cache_specs": "tasks",
    "stage_cache_keys": "tasks",
}


def __getattr__(name: str) -> Any:
    """A re-exported name, imported from its module on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # __import__ rather than importlib: this package sits on the memo's fast path. With a
    # fromlist, __import__ returns the named module itself.
    found = __import__(f"{__name__}.{module or name}", fromlist=[name])
    value = getattr(found, name) if module else found
    globals()[name] = value  # found directly from now on
    return value


__all__ = [
    "CACHE_ARTIFACT_TYPE",
    "CACHE_CONFIG_TYPE",
    "CACHE_VERSION",
    "DIFF_ID_ANNOTATION",
    "BuildCache",
    "CacheDestination",
    "CacheDocument",
    "CacheEntry",
    "CacheExportResult",
    "CacheImportResult",
    "CacheRecord",
    "CacheSource",
    "LayerRef",
    "RecordingBuildCache",
    "SourceDigest",
    "StageCacheKeys",
    "StepInputs",
    "StepPosition",
    "cache_manifest",
    "copy_memo",
    "entry_json",
    "explain_miss",
    "export_cache",
    "export_cache_to",
    "import_cache",
    "import_cache_from",
    "parse_cache_from",
    "parse_cache_spec",
    "parse_cache_specs",
    "parse_cache_to",
    "read_cache_manifest",
    "record_from_json",
    "select_keys",
    "stage_cache_keys",
]
