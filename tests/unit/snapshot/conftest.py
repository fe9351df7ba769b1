"""The sentinel fixture: a directory next to every extraction root that must stay untouched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    """A directory next to the extraction root that no layer may ever touch."""
    s = tmp_path / "sentinel"
    s.mkdir()
    (s / "file").write_text("original\n")
    (s / "sub").mkdir()
    (s / "sub" / "deep").write_text("deep\n")
    os.utime(s / "sub", (1_000_000, 1_000_000))
    os.utime(s, (1_000_000, 1_000_000))
    return s
