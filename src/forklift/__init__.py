"""forklift: a daemonless container image builder for multi-stage Dockerfiles.

The Python API::

    from pathlib import Path
    import forklift

    result = forklift.build(forklift.BuildOptions(context=Path("."), root=Path("store"), tags=("app:1",)))
    print(result.image.image_id)

``build`` and its types are imported on first use, so ``import forklift`` stays cheap (the CLI's
start-up is part of every cached rebuild).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from forklift.errors import (
    BuildError,
    DockerfileSyntaxError,
    ExpansionError,
    ForkliftError,
    ImageError,
    InstructionError,
    PlanError,
    RegistryError,
    RuntimeNotFound,
    SourceLocation,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from forklift.build import BuildOptions, BuildResult, BuiltImage, OutputSpec, build
    from forklift.oci.image import Image

_LAZY = {
    "build": "forklift.build",
    "BuildOptions": "forklift.build",
    "BuildResult": "forklift.build",
    "BuiltImage": "forklift.build",
    "OutputSpec": "forklift.build",
    "Image": "forklift.oci.image",
}

__all__ = [
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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'forklift' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
