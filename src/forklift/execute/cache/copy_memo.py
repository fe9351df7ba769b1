"""The ``COPY --from=<stage>`` memo: a stage's source digests, remembered by the stage's identity.

Hashing what ``COPY --from=<stage>`` reads means mounting the stage and reading every file; when the
stage is unchanged (same identity) and so are the paths and patterns, the digests are too. They
are kept as ``cache/from/<key>.json`` (``StoreLayout.copy_memo``), written atomically; an
unreadable file is simply a miss.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from forklift.execute.cache.format import SourceDigest
from forklift.fsatomic import atomic_write
from forklift.oci.storelayout import StoreLayout


def key(identity: str, sources: Sequence[str], excludes: Sequence[str], parents: bool, stage: str) -> str:
    """The memo key of a ``COPY --from`` of the stage with ``identity`` (and name ``stage``) that
    reads ``sources`` with ``excludes`` and ``--parents``."""
    raw = json.dumps([identity, list(sources), list(excludes), parents, stage])
    return hashlib.sha256(raw.encode()).hexdigest()


def load(layout: StoreLayout, memo_key: str) -> list[SourceDigest] | None:
    """The digests remembered under ``memo_key``, or None."""
    try:
        doc = json.loads((layout.copy_memo / f"{memo_key}.json").read_text())
        return [SourceDigest(str(d[0]), str(d[1]), tuple((str(a), str(b)) for a, b in d[2])) for d in doc]
    except (OSError, ValueError, TypeError, IndexError):
        return None


def save(layout: StoreLayout, memo_key: str, digests: Sequence[SourceDigest]) -> None:
    """Remember ``digests`` under ``memo_key``."""
    doc = [[d.label, d.digest, [list(f) for f in d.files]] for d in digests]
    atomic_write(layout.copy_memo / f"{memo_key}.json", json.dumps(doc), durable=False, parents=True)
