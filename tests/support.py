"""Plain helpers for tests: import them with ``from support import ...``.

They live here, not in conftest.py, because several directories have a conftest.py and
``from conftest import`` finds whichever was imported last.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

BUSYBOX = Path("/bin/busybox")


def in_ci() -> bool:
    """CI sets CI=1 (via .ci/run); there, a missing tool fails instead of skipping."""
    return os.environ.get("CI") == "1"


def require_tool(name: str) -> str:
    """The path of an external tool; skip the test without it, but fail in CI."""
    path = shutil.which(name)
    if path is None:
        if in_ci():
            pytest.fail(f"{name} is required in CI (scripts/setup.sh installs it)")
        pytest.skip(f"{name} is not installed (run scripts/setup.sh test)")
    return path


def make_busybox_rootfs(dest: Path) -> Path:
    """A minimal root filesystem: static busybox with its applets, /etc/passwd and /etc/group."""
    if not BUSYBOX.exists():
        if in_ci():
            pytest.fail("busybox-static is required in CI")
        pytest.skip("busybox-static is not installed")
    for d in ("bin", "etc", "tmp", "root", "usr/bin", "var"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        link = dest / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
        "app:x:1000:1000:app:/home/app:/bin/sh\n"
    )
    (dest / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\napp:x:1000:\n")
    (dest / "tmp").chmod(0o1777)
    return dest


def missed(progress: str) -> list[str]:
    """The step titles that missed the cache in ``--progress=plain`` output, in order."""
    titles: dict[str, str] = {}
    out: list[str] = []
    for line in progress.splitlines():
        num, _, rest = line.partition(" ")
        if rest.startswith("[") and num not in titles:
            titles[num] = rest
        elif rest.startswith("cache miss:"):
            out.append(titles[num])
    return out
