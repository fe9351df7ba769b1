"""ADD of a local archive: a user's tar, not an image layer (whiteout names are plain files)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from forklift.errors import BuildError, SourceLocation
from forklift.execute.ops.copy import _extract_archive


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_whiteout_names_in_a_user_archive_are_ordinary_files(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep").write_text("already here")
    (target / "d").mkdir()
    (target / "d" / "old").write_text("old")
    archive = _tar(tmp_path / "a.tar.gz", {".wh.keep": b"w", "d/.wh..wh..opq": b"o", "d/new": b"n"})
    _extract_archive(archive, target)
    assert (target / ".wh.keep").read_bytes() == b"w" and (target / "keep").read_text() == "already here"
    assert (target / "d" / ".wh..wh..opq").read_bytes() == b"o"
    assert (target / "d" / "old").read_text() == "old" and (target / "d" / "new").read_bytes() == b"n"


def test_a_hostile_archive_is_a_build_error_at_the_add(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    archive = _tar(tmp_path / "evil.tar.gz", {"../escape": b"x"})
    where = SourceLocation("Dockerfile", 3)
    with pytest.raises(BuildError) as info:
        _extract_archive(archive, target, where)
    assert "evil.tar.gz" in info.value.message and info.value.location == where
    assert not (tmp_path / "escape").exists()
