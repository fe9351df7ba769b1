"""DESIGN.md's layering, enforced: the import-linter contracts in pyproject.toml must hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_hold() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is part of the test extras"
    result = subprocess.run([lint_imports], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout
    assert "KEPT" in result.stdout


def test_contracts_cover_the_image_library() -> None:
    config = (REPO / "pyproject.toml").read_text()
    assert 'source_modules = ["forklift.oci"]' in config
    assert '"forklift.cli",\n    "(forklift.build)",\n    "forklift.execute",' in config
