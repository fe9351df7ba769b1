"""The public Python API is pinned: changing it is a decision, not an accident."""

from __future__ import annotations

import subprocess
import sys

import forklift


def test_all_is_pinned() -> None:
    assert sorted(forklift.__all__) == [
        "BuildError",
        "BuildOptions",
        "BuildResult",
        "BuiltImage",
        "DockerfileSyntaxError",
        "ExpansionError",
        "ForkliftError",
        "Image",
        "ImageError",
        "InstructionError",
        "OutputSpec",
        "PlanError",
        "RegistryError",
        "RuntimeNotFound",
        "SourceLocation",
        "__version__",
        "build",
    ]
    for name in forklift.__all__:
        assert getattr(forklift, name) is not None


def test_import_forklift_does_not_load_the_engine() -> None:
    code = "import sys, forklift; print('forklift.build' in sys.modules, 'forklift.execute' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.split() == ["False", "False"]
