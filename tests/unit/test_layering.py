"""DESIGN.md's layering, enforced: the import-linter contracts in pyproject.toml must hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_hold() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is part of the test extras"
    result = subprocess.run([lint_imports], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout
    assert "KEPT" in result.stdout


def test_contracts_follow_the_design() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    contracts = {c["name"]: c for c in config["tool"]["importlinter"]["contracts"]}
    layers = [layer.strip("()") for layer in contracts["Pipeline layers (DESIGN.md)"]["layers"]]
    order = ["forklift.cli", "forklift.build", "forklift.execute", "forklift.dockerfile", "forklift.oci"]
    assert [layer for layer in layers if layer in order] == order
    # Only errors and the @record decorator (which imports nothing of forklift) sit below the image library.
    assert layers[-2:] == ["forklift.errors", "forklift.records"]
    forbidden = contracts["The image library knows nothing about Dockerfiles"]
    assert forbidden["source_modules"] == ["forklift.oci"]
    assert {"forklift.dockerfile", "forklift.plan", "forklift.execute"} <= set(forbidden["forbidden_modules"])
