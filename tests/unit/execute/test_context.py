"""The build context: wildcard lookup, .dockerignore, escapes refused, digests cached by stat."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from forklift.errors import BuildError
from forklift.execute.context import (
    SourceTree,
    StatCache,
    clean_source,
    match_path,
    source_set_digest,
)


class IgnoreNames:
    """A fake .dockerignore: ignores exact relative paths (and what is below them)."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def matches(self, path: str) -> bool:
        return any(path == n or path.startswith(n + "/") for n in self.names)

    def may_skip_dir(self, path: str) -> bool:
        return True


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (root / "src" / "sub").mkdir(parents=True)
    (root / "src" / "a.c").write_text("int a;")
    (root / "src" / "b.c").write_text("int b;")
    (root / "src" / "b.h").write_text("int h;")
    (root / "src" / "sub" / "c.c").write_text("int c;")
    (root / "secret.key").write_text("k")
    (root / "link-in").symlink_to("src/a.c")
    (root / "link-out").symlink_to("../../etc/passwd")
    return root


def test_match_path_is_go_filepath_match() -> None:
    assert match_path("src/*.c", "src/a.c")
    assert not match_path("*.c", "src/a.c")  # * never crosses /
    assert match_path("src/?.[ch]", "src/b.h")
    assert match_path("src/[^a].c", "src/b.c") and not match_path("src/[^a].c", "src/a.c")
    assert match_path("a\\*b", "a*b") and not match_path("a\\*b", "axb")


def test_glob_and_ignore(ctx: Path) -> None:
    tree = SourceTree(ctx, ignore=IgnoreNames("src/b.c", "secret.key"))
    assert tree.glob("src/*.c") == ["src/a.c"]
    assert tree.glob("/src/*.[ch]") == ["src/a.c", "src/b.h"]
    assert tree.glob("secret.key") == []
    assert tree.glob("src/") == ["src"]
    assert tree.glob("*/*.c") == ["src/a.c"]
    rels = [e.relpath for e in tree.entries("src")]
    assert rels == ["", "a.c", "b.h", "sub", "sub/c.c"]


def test_escapes_are_refused(ctx: Path) -> None:
    tree = SourceTree(ctx)
    with pytest.raises(BuildError, match="outside"):
        clean_source("../x")
    with pytest.raises(BuildError, match="outside the build context"):
        tree.glob("link-out")
    assert tree.glob("link-in") == ["src/a.c"]  # a top-level symlink inside the context is followed


def test_entries_are_root_owned_from_the_context(ctx: Path) -> None:
    entry = next(SourceTree(ctx).entries("src/a.c"))
    assert (entry.kind, entry.uid, entry.gid, entry.relpath) == ("file", 0, 0, "")
    assert entry.digest.startswith("sha256:")


def test_stat_cache_rereads_only_changed_files(ctx: Path, tmp_path: Path) -> None:
    old = 1_600_000_000
    for p in ctx.rglob("*"):
        if not p.is_symlink():
            os.utime(p, (old, old))
    time.sleep(0.15)  # out of the racy window: the ctime just changed
    store = tmp_path / "store"
    cache = StatCache.for_context(store, ctx)
    first = source_set_digest(list(SourceTree(ctx, stat_cache=cache).entries("src")))
    assert cache.hashed == 4
    cache.save()
    cache2 = StatCache.for_context(store, ctx)
    assert source_set_digest(list(SourceTree(ctx, stat_cache=cache2).entries("src"))) == first
    assert cache2.hashed == 0  # nothing re-read on an unchanged second build
    (ctx / "src" / "b.c").write_text("int B;")
    os.utime(ctx / "src" / "b.c", (old, old))  # same mtime: size/ctime still reveal the change
    time.sleep(0.15)
    cache3 = StatCache.for_context(store, ctx)
    changed = source_set_digest(list(SourceTree(ctx, stat_cache=cache3).entries("src")))
    assert changed != first and cache3.hashed == 1


def test_set_digest_covers_names_and_modes(ctx: Path) -> None:
    tree = SourceTree(ctx)
    before = source_set_digest(list(tree.entries("src")))
    (ctx / "src" / "a.c").chmod(0o755)
    after_mode = source_set_digest(list(tree.entries("src")))
    (ctx / "src" / "a.c").rename(ctx / "src" / "z.c")
    after_rename = source_set_digest(list(tree.entries("src")))
    assert len({before, after_mode, after_rename}) == 3
