"""The whole-build memo: valid only while everything it recorded is unchanged."""

from __future__ import annotations

import os
import time
from pathlib import Path

from forklift.execute.cache import memo


def sig(path: Path) -> list[int]:
    st = os.lstat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    store, context = tmp_path / "store", tmp_path / "ctx"
    (store / "blobs" / "sha256").mkdir(parents=True)
    (store / "blobs" / "sha256" / "abc").write_text("blob")
    (store / "refs.json").write_text("{}")
    context.mkdir()
    f = context / "a.txt"
    f.write_text("a")
    old = time.time() - 10
    os.utime(f, (old, old))
    time.sleep(0.15)  # ctime out of the racy window
    return store, context, f


def test_memo_round_trip_and_invalidation(tmp_path: Path) -> None:
    store, context, f = setup(tmp_path)
    key = memo.memo_key({"text": "FROM x"})
    assert key != memo.memo_key({"text": "FROM y"})
    assert memo.save(store, key, {"blobs": ["sha256:abc"], "images": []}, {"a.txt": sig(f), "": sig(context)})
    assert memo.load_valid(store, key, context) is not None
    f.write_text("b")  # content (and stat signature) changed
    assert memo.load_valid(store, key, context) is None


def test_memo_is_stale_when_refs_or_blobs_change(tmp_path: Path) -> None:
    store, context, f = setup(tmp_path)
    key = memo.memo_key({"text": "FROM x"})
    memo.save(store, key, {"blobs": ["sha256:abc"]}, {"a.txt": sig(f)})
    (store / "refs.json").write_text('{"refs": {}}')
    assert memo.load_valid(store, key, context) is None
    memo.save(store, key, {"blobs": ["sha256:abc"]}, {"a.txt": sig(f)})
    assert memo.load_valid(store, key, context) is not None
    (store / "blobs" / "sha256" / "abc").unlink()  # pruned
    assert memo.load_valid(store, key, context) is None


def test_a_just_modified_file_is_not_trusted(tmp_path: Path) -> None:
    store, _, f = setup(tmp_path)
    f.write_text("fresh")
    assert not memo.save(store, memo.memo_key({}), {"blobs": []}, {"a.txt": sig(f)})


def test_nested_reads_symlinks_and_removed_paths(tmp_path: Path) -> None:
    store, context, f = setup(tmp_path)
    (context / "d").mkdir()
    nested = context / "d" / "n.txt"
    nested.write_text("n")
    link = context / "link"
    link.symlink_to("a.txt")
    for p in (nested, context / "d"):
        os.utime(p, (time.time() - 10,) * 2)
    time.sleep(0.15)
    reads = {"a.txt": sig(f), "d/n.txt": sig(nested), "link": sig(link), "gone": [], "": sig(context)}
    key = memo.memo_key({"text": "nested"})
    assert memo.save(store, key, {"blobs": []}, reads)
    assert memo.load_valid(store, key, context) is not None  # the symlink is lstat'ed, "gone" stays gone
    (context / "gone").write_text("now here")
    assert memo.load_valid(store, key, context) is None
    key2 = memo.memo_key({"text": "nested only"})
    assert memo.save(store, key2, {"blobs": []}, {"d/n.txt": sig(nested)})
    assert memo.load_valid(store, key2, context) is not None
    nested.unlink()
    assert memo.load_valid(store, key2, context) is None
    assert memo.load_valid(store, key, tmp_path / "no-such-context") is None
