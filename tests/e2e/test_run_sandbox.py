"""The RUN sandbox with the real runtime: seccomp, ``--security=insecure`` and ``--allow``, CDI devices.

A sandboxed RUN has forklift's seccomp filter (``Seccomp: 2``) and cannot create a user
namespace (``unshare -U``, which the default capabilities alone would permit: the insecure RUN
proves it), while the same call works under ``--security=insecure``. An entitlement is checked
also when the step is a cache hit. ``RUN --device`` injects a CDI device from a spec directory.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from forklift.build import BuildOptions, BuildResult, build
from forklift.errors import BuildError
from forklift.report.progress import PlainRenderer
from support import require_tool

pytestmark = pytest.mark.e2e

FORKLIFT = Path(sys.executable).with_name("forklift")

SANDBOX = """\
FROM busybox
RUN grep -q "^Seccomp:.2" /proc/self/status && ! unshare -U true 2>/tmp/e && grep -q "not permitted" /tmp/e
RUN --security=insecure grep -q "^Seccomp:.0" /proc/self/status && unshare -U true && mount -t tmpfs t /tmp \\
    && test -c /dev/fuse && test -b /dev/loop0 && test -c /dev/net/tun
"""

DEVICES = """\
FROM busybox
RUN --device=example.com/test=zero,required \\
    test "$(head -c 4 /dev/forklift-zero | od -An -tx1 | tr -d ' ')" = 00000000 && test "$ZERO" = injected
RUN --device=example.com/test=absent ls /dev > /devices
"""

ZERO_SPEC = {
    "cdiVersion": "0.6.0",
    "kind": "example.com/test",
    "devices": [
        {
            "name": "zero",
            "containerEdits": {
                "deviceNodes": [
                    {
                        "path": "/dev/forklift-zero",
                        "hostPath": "/dev/zero",
                        "type": "c",
                        "major": 1,
                        "minor": 5,
                    }
                ],
                "env": ["ZERO=injected"],
            },
        }
    ],
}


@pytest.fixture(autouse=True)
def _runtime() -> None:
    require_tool("runc")


@pytest.fixture
def store(store_root: Path, busybox_image: Callable[[Path], str]) -> Path:
    busybox_image(store_root)
    return store_root


def run_build(ctx: Path, store: Path, dockerfile: str, **kwargs: object) -> tuple[BuildResult, str]:
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    out = io.StringIO()
    result = build(BuildOptions(context=ctx, root=store, **kwargs), events=PlainRenderer(out))  # type: ignore[arg-type]
    return result, out.getvalue()


def test_seccomp_in_the_sandbox_and_insecure_needs_its_entitlement(tmp_path: Path, store: Path) -> None:
    ctx = tmp_path / "ctx"
    run_build(ctx, store, SANDBOX, allow=("security.insecure",))
    # Without the entitlement the same (now cached) insecure step is refused, at its line, before
    # any step starts (BuildKit checks entitlements before it solves).
    out = io.StringIO()
    with pytest.raises(BuildError) as info:
        build(BuildOptions(context=ctx, root=store), events=PlainRenderer(out))
    assert "FROM" not in out.getvalue() and "CACHED" not in out.getvalue()
    err = info.value
    assert err.message == "security.insecure is not allowed"
    assert err.location is not None and err.location.line == 3
    assert err.hint is not None and "--allow security.insecure" in err.hint


def test_run_device_injects_a_cdi_device_with_the_entitlement(tmp_path: Path, store: Path) -> None:
    specs = tmp_path / "cdi"
    specs.mkdir()
    (specs / "test.json").write_text(json.dumps(ZERO_SPEC))
    ctx = tmp_path / "ctx"
    _, progress = run_build(ctx, store, DEVICES, allow=("device",), cdi_spec_dirs=(specs,))
    assert "optional device 'example.com/test=absent' is not registered" in progress

    # The command line: without --allow device the step is refused with a clear error.
    (ctx / "Dockerfile").write_text(DEVICES)
    base = [str(FORKLIFT), "--root", str(store), "build", "--progress", "plain", "--cdi-spec-dir", str(specs)]
    refused = subprocess.run([*base, str(ctx)], capture_output=True, text=True)
    assert refused.returncode != 0
    assert 'device "example.com/test=zero" is not allowed' in refused.stderr
    assert "Dockerfile:2" in refused.stderr and "Traceback" not in refused.stderr

    # A required device that no spec defines fails at its RUN.
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN --device=example.com/test=gpu,required=true true\n")
    missing = subprocess.run([*base, "--allow", "device", str(ctx)], capture_output=True, text=True)
    assert missing.returncode != 0
    assert 'required device "example.com/test=gpu" is not registered' in missing.stderr
