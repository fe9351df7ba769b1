"""Which ignore file a build (and `forklift check`) reads."""

from __future__ import annotations

from pathlib import Path

from forklift.execute.context import read_dockerignore


def test_no_ignore_file(tmp_path: Path) -> None:
    assert read_dockerignore(tmp_path, tmp_path / "Dockerfile") is None


def test_the_context_ignore_file(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("*.log\n")
    ignore = read_dockerignore(tmp_path, None)
    assert ignore is not None
    assert ignore.matches("a.log") and not ignore.matches("a.txt")


def test_the_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("*.log\n")
    (tmp_path / "app.Dockerfile.dockerignore").write_text("*.txt\n")
    ignore = read_dockerignore(tmp_path, tmp_path / "app.Dockerfile")
    assert ignore is not None
    assert ignore.matches("a.txt") and not ignore.matches("a.log")


def test_a_directory_named_like_the_ignore_file_is_not_one(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").mkdir()
    assert read_dockerignore(tmp_path, None) is None
