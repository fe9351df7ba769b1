"""forklift: a daemonless container image builder for multi-stage Dockerfiles."""

from __future__ import annotations

__version__ = "0.1.0"

from forklift.errors import ForkliftError, SourceLocation

__all__ = ["ForkliftError", "SourceLocation", "__version__"]
