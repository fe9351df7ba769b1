"""The click-free fast path takes exactly the plain build command lines and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from forklift.cli.entry import FastBuild, parse_fast_build


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["build", "."], FastBuild(root=None, context=".")),
        (
            ["--root", "/s", "build", "-q", "-f", "D", "-t", "a:1", "--tag=b", "--target", "x", "ctx"],
            FastBuild(root="/s", context="ctx", file="D", tags=("a:1", "b"), targets=("x",), quiet=True),
        ),
        (
            ["--root=/s", "build", "--build-arg", "A=1", "--build-arg=B=2=3", "--progress=plain", "c"],
            FastBuild(root="/s", context="c", build_args=("A=1", "B=2=3"), progress="plain"),
        ),
        (  # a flag's value may start with "-", as click takes it
            ["build", "--file", "x", "--quiet", "-t", "-odd-name", "c"],
            FastBuild(root=None, context="c", file="x", tags=("-odd-name",), quiet=True),
        ),
    ],
)
def test_plain_builds_are_taken(argv: list[str], expected: FastBuild) -> None:
    assert parse_fast_build(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["images"],
        ["--root"],
        ["--rootx", "build", "."],
        ["build"],  # no context
        ["build", "--help"],
        ["build", "-h", "."],
        ["build", "--no-cache", "."],  # any other flag: the click command
        ["build", "-o", "type=tar,dest=x", "."],
        ["build", "-f", "-", "."],  # the Dockerfile from stdin
        ["build", "-f", "a", "-f", "b", "."],
        ["build", "--progress", "fancy", "."],
        ["build", "--progress", "plain", "--progress", "tty", "."],
        ["build", ".", "other"],
        ["build", "-t"],  # a flag without its value
        ["build", "-tname", "."],  # click's attached short value: left to click
        ["build", "--", "."],
    ],
)
def test_anything_else_goes_to_click(argv: list[str]) -> None:
    assert parse_fast_build(argv) is None


def test_a_file_as_context_goes_to_click(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    assert parse_fast_build(["build", str(tmp_path / "f")]) is None  # click's "is a file" message
    assert parse_fast_build(["build", str(tmp_path)]) == FastBuild(root=None, context=str(tmp_path))
