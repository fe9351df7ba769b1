"""What a build needs from the machine, found lazily: the OCI runtime and whether overlayfs mounts.

Each build has its own runtime state dir (``build_state_dir``), so stopping this build's containers
when a stage fails while others run (``kill_containers``) never touches another build's. The
runtime is probed once (a trial container) and remembered in ``<store>/runtime.json``
(``probed_runtime``); ``OverlayProbe`` asks the kernel at most once per build. A fully cached build
pays for neither.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from forklift.oci.storelayout import StoreLayout

if TYPE_CHECKING:
    from forklift.runtime.base import Runtime
    from forklift.runtime.oci import OciRuntime

BUILD_STATE_ROOT = Path("/run/forklift/builds")


def build_state_dir() -> Path:
    """A fresh runtime state dir for one build (not created here). Short: runc keeps sockets there."""
    return BUILD_STATE_ROOT / uuid.uuid4().hex[:12]


def probed_runtime(root: Path, name: str | None, state_dir: Path) -> OciRuntime:
    """The OCI runtime: probed once (a trial container) and remembered in ``<store>/runtime.json``
    while the binary stays the same file, so a build or ``forklift run`` does not pay the probe
    every time."""
    from forklift.runtime.oci import remembered_runtime

    layout = StoreLayout(root)
    layout.bundles.mkdir(parents=True, exist_ok=True)
    return remembered_runtime(layout.runtime_record, name, state_dir=state_dir, bundle_dir=layout.bundles)


def kill_containers(runtime: Runtime | None, state_dir: Path) -> None:
    """SIGKILL every container still running in this build's runtime state dir."""
    import subprocess

    binary = getattr(runtime, "binary", None)
    if binary is None or not state_dir.is_dir():
        return
    for entry in state_dir.iterdir():
        subprocess.run(
            [str(binary), "--root", str(state_dir), "kill", entry.name, "KILL"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )


class OverlayProbe:
    """Whether overlayfs mounts under ``snapshots_root``: ``forced`` when given (``--overlay``), else
    asked of the kernel on the first call only (thread-safe: stages call it concurrently)."""

    def __init__(self, snapshots_root: Path, forced: bool | None = None) -> None:
        self._snapshots_root = snapshots_root
        self._forced = forced
        self._lock = threading.Lock()
        self._supported: bool | None = None

    def __call__(self) -> bool:
        if self._forced is not None:
            return self._forced
        with self._lock:
            if self._supported is None:
                from forklift.snapshot.overlay import overlay_supported

                self._supported = overlay_supported(self._snapshots_root)
            return self._supported
