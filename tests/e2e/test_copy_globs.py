"""COPY with ``**``: --parents keeps the structure below the pivot, --exclude filters, plain
wildcards copy flat. The expectations are BuildKit's (dockerfile frontend 1.7+), no runtime needed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from forklift.build import BuildOptions, OutputSpec, build
from forklift.errors import BuildError
from forklift.report.progress import PlainRenderer

pytestmark = pytest.mark.e2e

FILES = [
    "src/a.go",
    "src/x/b.go",
    "src/x/y/c.go",
    "src/x/readme.txt",
    "src/x/y/d.txt",
    "src/z.txt",
    "docs/keep.md",
    "docs/skip.log",
    "docs/sub/skip.log",
    "docs/sub/keep.md",
    "a/b/c",
]


def _build(ctx: Path, store: Path, dockerfile: str, out: Path) -> None:
    (ctx / "Dockerfile").write_text(dockerfile)
    build(
        BuildOptions(context=ctx, root=store, outputs=(OutputSpec(type="local", dest=out),)),
        events=PlainRenderer(io.StringIO()),
    )


def _tree(root: Path, top: str) -> list[str]:
    base = root / top
    return sorted(str(p.relative_to(base)) + ("/" if p.is_dir() else "") for p in base.rglob("*"))


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    d = tmp_path / "ctx"
    for name in FILES:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(name)
    return d


def test_double_star_parents_exclude_and_plain_wildcards(ctx: Path, store_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _build(
        ctx,
        store_root,
        "FROM scratch\n"
        "COPY --parents ./src/**/*.go /p1/\n"
        "COPY --parents ./src/./x/**/*.txt /p2/\n"
        "COPY --parents --exclude=**/y src/**/*.go /p3/\n"
        "COPY --parents nomatch*/** /p4/\n"
        "COPY --parents ./a/./b/c /p5/\n"
        "COPY src/**/*.txt /flat/\n"
        "COPY --exclude=**/*.log docs/ /ex/\n"
        "COPY --exclude=*.log docs/ /ex1/\n",
        out,
    )
    assert _tree(out, "p1") == ["src/", "src/a.go", "src/x/", "src/x/b.go", "src/x/y/", "src/x/y/c.go"]
    assert (out / "p1/src/x/y/c.go").read_text() == "src/x/y/c.go"
    assert _tree(out, "p2") == ["x/", "x/readme.txt", "x/y/", "x/y/d.txt"]  # pivot: below src/
    assert _tree(out, "p3") == ["src/", "src/a.go", "src/x/", "src/x/b.go"]
    assert _tree(out, "p4") == []  # no match: dest made, no error
    assert _tree(out, "p5") == ["b/", "b/c"]
    # Without --parents BuildKit matches with Go filepath.Match: ``**`` is one component like ``*``.
    assert _tree(out, "flat") == ["readme.txt"]
    assert _tree(out, "ex") == ["keep.md", "sub/", "sub/keep.md"]
    # '*.log' is relative to the copied directory and does not cross '/'.
    assert _tree(out, "ex1") == ["keep.md", "sub/", "sub/keep.md", "sub/skip.log"]


def test_parents_errors(ctx: Path, store_root: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="not found") as err:
        _build(ctx, store_root, "FROM scratch\nCOPY --parents src/missing.go /p/\n", tmp_path / "o1")
    assert err.value.location is not None and err.value.location.line == 2
    with pytest.raises(BuildError, match="--exclude"):
        _build(ctx, store_root, "FROM scratch\nCOPY --exclude=[ab src/ /p/\n", tmp_path / "o2")
