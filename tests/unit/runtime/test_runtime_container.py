"""docker-run semantics for an image's config: argv, env, user, workdir, volumes."""

from __future__ import annotations

from pathlib import Path

import pytest

from forklift.errors import ForkliftError
from forklift.oci.model import ContainerConfig
from forklift.runtime.base import Mount
from forklift.runtime.container import (
    container_args,
    container_process,
    parse_env_option,
    parse_volume_option,
)


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "command", "override", "expected"),
    [
        (None, ("sh",), (), None, ("sh",)),
        (("/app",), ("--serve",), (), None, ("/app", "--serve")),
        (("/app",), ("--serve",), ("--check",), None, ("/app", "--check")),
        (None, ("sh",), ("echo", "hi"), None, ("echo", "hi")),
        (("/app",), ("--serve",), (), ("/bin/sh",), ("/bin/sh",)),  # --entrypoint drops CMD
        (("/app",), ("--serve",), ("-c", "true"), ("/bin/sh",), ("/bin/sh", "-c", "true")),
        (("/app",), ("x",), ("ls",), (), ("ls",)),  # --entrypoint ""
    ],
)
def test_container_args(
    entrypoint: tuple[str, ...] | None,
    cmd: tuple[str, ...] | None,
    command: tuple[str, ...],
    override: tuple[str, ...] | None,
    expected: tuple[str, ...],
) -> None:
    config = ContainerConfig(entrypoint=entrypoint, cmd=cmd)
    assert container_args(config, command, entrypoint=override) == expected


def test_nothing_to_run_is_an_error() -> None:
    with pytest.raises(ForkliftError, match="no command specified"):
        container_args(ContainerConfig())


def test_env_option() -> None:
    assert parse_env_option("A=1=2") == ("A", "1=2")
    assert parse_env_option("A=") == ("A", "")
    assert parse_env_option("HOME_X", {"HOME_X": "v"}) == ("HOME_X", "v")
    assert parse_env_option("UNSET", {}) is None
    with pytest.raises(ForkliftError):
        parse_env_option("=x")


def test_volume_option(tmp_path: Path) -> None:
    assert parse_volume_option(f"{tmp_path}:/data") == Mount("/data", "bind", str(tmp_path), ("rbind",))
    assert parse_volume_option(f"{tmp_path}:/data:ro").options == ("rbind", "ro")
    for bad in ("name:/data", f"{tmp_path}", f"{tmp_path}:rel", f"{tmp_path}:/d:rx", "/no/such/dir:/d"):
        with pytest.raises(ForkliftError):
            parse_volume_option(bad)


def test_container_process(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
    )
    (tmp_path / "etc" / "group").write_text("app:x:1000:\n")
    config = ContainerConfig(user="app", env=("PATH=/bin", "A=image"), cmd=("./server",), working_dir="/srv")
    process = container_process(config, tmp_path, env=(("A", "cli"),), terminal=True)
    assert process.args == ("./server",)
    assert (process.uid, process.gid, process.cwd, process.terminal) == (1000, 1000, "/srv", True)
    assert dict(process.env) == {
        "HOSTNAME": "forklift",
        "PATH": "/bin",
        "A": "cli",
        "HOME": "/home/app",
        "TERM": "xterm",
    }
    as_root = container_process(config, tmp_path, user="0", workdir="/tmp", network="none")
    assert (as_root.uid, as_root.cwd, as_root.network, dict(as_root.env)["HOME"]) == (
        0,
        "/tmp",
        "none",
        "/root",
    )
