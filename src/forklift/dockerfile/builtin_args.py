"""The build arguments BuildKit defines by itself (usable without an ARG declaration)."""

from __future__ import annotations

# The automatic platform ARGs: FROM may use them undeclared; inside a stage they are visible only
# once declared (``ARG TARGETARCH``); the build checks never report them as undefined.
PLATFORM_ARGS: tuple[str, ...] = (
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "TARGETSTAGE",
    "BUILDOSVERSION",
    "TARGETOSVERSION",
)
