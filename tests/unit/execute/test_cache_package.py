"""The cache package: its re-exports, and COPY --from's memo (keys and files existing stores hold)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import forklift.execute.cache as cache
from forklift.execute.cache import SourceDigest, copy_memo
from forklift.oci.storelayout import StoreLayout


def test_every_re_export_resolves() -> None:
    for name in cache.__all__:
        assert getattr(cache, name) is not None, name
    with pytest.raises(AttributeError):
        _ = cache.no_such_name


def test_copy_memo_key_is_the_one_existing_stores_hold() -> None:
    key = copy_memo.key("sha256:abc", ["/out"], ("*.tmp",), False, "builder")
    # The formula the memo files of existing stores are named by (a change only costs a rehash).
    expected = hashlib.sha256(json.dumps(["sha256:abc", ["/out"], ["*.tmp"], False, "builder"]).encode())
    assert key == expected.hexdigest()
    assert key != copy_memo.key("sha256:abc", ["/out"], ("*.tmp",), True, "builder")


def test_copy_memo_round_trip_and_unreadable_files(tmp_path: Path) -> None:
    layout = StoreLayout(tmp_path)
    digests = [SourceDigest("stage builder /out", "sha256:1", (("a", "sha256:2"),)), SourceDigest("x", "y")]
    assert copy_memo.load(layout, "k") is None
    copy_memo.save(layout, "k", digests)
    assert copy_memo.load(layout, "k") == digests
    assert json.loads((tmp_path / "cache" / "from" / "k.json").read_text()) == [
        ["stage builder /out", "sha256:1", [["a", "sha256:2"]]],
        ["x", "y", []],
    ]
    (tmp_path / "cache" / "from" / "k.json").write_text("[[1]]")
    assert copy_memo.load(layout, "k") is None
    assert sorted(p.name for p in (tmp_path / "cache" / "from").iterdir()) == ["k.json"]
