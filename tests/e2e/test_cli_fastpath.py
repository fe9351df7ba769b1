"""The installed script runs plain builds without click, with the same result and output as the
click command, and answers a user mistake the same way: a message, status 1, no traceback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from support import require_tool

pytestmark = pytest.mark.e2e

FORKLIFT = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "forklift")


def _forklift(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FORKLIFT, *args], capture_output=True, text=True, timeout=120)


def test_fast_and_click_paths_build_the_same(
    tmp_path: Path, store_root: Path, busybox_image: Callable[[Path], str]
) -> None:
    require_tool("runc")
    busybox_image(store_root)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nARG WHO\nRUN echo hello $WHO > /greeting\n")
    common = ["--root", str(store_root), "build", "-q", "-t", "greet:1", "--build-arg", "WHO=you", str(ctx)]
    fast = _forklift(*common)
    assert fast.returncode == 0, fast.stderr
    # --network default changes nothing but is not a fast-path flag: this one goes through click.
    slow = _forklift(*common[:3], "--network", "default", *common[3:])
    assert slow.returncode == 0, slow.stderr
    assert fast.stdout == slow.stdout and fast.stdout.startswith("sha256:") and fast.stdout.count("\n") == 1
    assert fast.stderr == slow.stderr == ""
    plain = _forklift(*common[:3], "--progress=plain", *common[4:])  # no -q: progress on stderr
    assert plain.returncode == 0 and plain.stdout == ""
    assert "CACHED" in plain.stderr and fast.stdout.strip() in plain.stderr


def test_fast_path_imports_no_click(tmp_path: Path, store_root: Path) -> None:
    code = (
        "import sys\n"
        "from forklift.cli.entry import parse_fast_build, run_fast_build\n"
        "status = run_fast_build(parse_fast_build(sys.argv[1:]))\n"
        "print(status, 'click' in sys.modules)\n"
    )
    missing = tmp_path / "no-such-context"
    proc = subprocess.run(
        [sys.executable, "-c", code, "--root", str(store_root), "build", "-q", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.split() == ["1", "False"]
    assert "is not a directory" in proc.stderr and "Traceback" not in proc.stderr
    through_script = _forklift("--root", str(store_root), "build", str(missing))
    assert through_script.returncode == 1 and through_script.stderr == proc.stderr
