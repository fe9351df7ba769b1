"""The OCI bundle config forklift writes, and the mount targets it makes in a rootfs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forklift.errors import ForkliftError
from forklift.runtime.base import Mount, Process
from forklift.runtime.oci import (
    CAPABILITY_NAMES,
    DEFAULT_CAPABILITIES,
    MountTargets,
    build_config,
    held_capabilities,
    prepared_rootfs,
    write_network_files,
)


def _config(process: Process, mounts: tuple[Mount, ...] = ()) -> dict[str, object]:
    return build_config(process, Path("/r/rootfs"), mounts, bundle=Path("/b"), nofile=20000)


def test_namespaces_follow_the_network_mode() -> None:
    host = _config(Process(args=("true",), network="host"))
    none = _config(Process(args=("true",), network="none"))
    types = [n["type"] for n in host["linux"]["namespaces"]]  # type: ignore[index]
    assert types == ["pid", "ipc", "uts", "mount"]
    assert {"type": "network"} in none["linux"]["namespaces"]  # type: ignore[index]


def test_process_fields() -> None:
    config = _config(
        Process(args=("sh", "-c", "x"), env=(("A", "1"),), cwd="/w", uid=5, gid=6, additional_gids=(7,))
    )
    process = config["process"]
    assert process["args"] == ["sh", "-c", "x"]  # type: ignore[index]
    assert process["env"][1] == "A=1"  # type: ignore[index]
    assert process["env"][0].startswith("PATH=/usr/local/sbin:")  # type: ignore[index]
    assert process["cwd"] == "/w"  # type: ignore[index]
    assert process["user"] == {"uid": 5, "gid": 6, "additionalGids": [7]}  # type: ignore[index]
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000}]  # type: ignore[index]
    assert process["noNewPrivileges"] is False  # type: ignore[index]
    caps = process["capabilities"]  # type: ignore[index]
    assert caps["bounding"] == list(DEFAULT_CAPABILITIES)
    assert caps["effective"] == []  # a non-root user does not hold capabilities
    root_caps = _config(Process(args=("x",)))["process"]["capabilities"]  # type: ignore[index]
    assert root_caps["effective"] == list(DEFAULT_CAPABILITIES)
    assert "CAP_SYS_ADMIN" not in DEFAULT_CAPABILITIES


def test_image_path_is_kept() -> None:
    env = _config(Process(args=("x",), env=(("PATH", "/opt/bin"),)))["process"]["env"]  # type: ignore[index]
    assert env == ["PATH=/opt/bin"]


def test_mounts() -> None:
    config = _config(
        Process(args=("x",)),
        (Mount(target="/cache", type="tmpfs"), Mount(target="/src", source="/host/src", options=("ro",))),
    )
    mounts = {m["destination"]: m for m in config["mounts"]}  # type: ignore[attr-defined]
    assert list(mounts)[:7] == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    ]
    assert "ro" in mounts["/sys"]["options"]
    for name in ("resolv.conf", "hosts", "hostname"):
        entry = mounts[f"/etc/{name}"]
        assert entry["source"] == f"/b/{name}" and "ro" in entry["options"]
    assert mounts["/cache"] == {"destination": "/cache", "type": "tmpfs", "source": "tmpfs", "options": []}
    assert mounts["/src"]["options"] == ["rbind", "ro"]
    assert config["root"] == {"path": "/r/rootfs", "readonly": False}
    assert "/proc/kcore" in config["linux"]["maskedPaths"]  # type: ignore[index]


def test_network_files(tmp_path: Path) -> None:
    write_network_files(tmp_path, Process(args=("x",), hostname="box", extra_hosts={"db": "10.0.0.2"}))
    assert (tmp_path / "hostname").read_text() == "box\n"
    hosts = (tmp_path / "hosts").read_text()
    assert hosts.endswith("127.0.1.1\tbox\n10.0.0.2\tdb\n")
    assert (tmp_path / "resolv.conf").read_text() == Path("/etc/resolv.conf").read_text()


def test_placeholders_are_removed_and_mount_dirs_stay(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hosts").write_text("mine\n")
    os.utime(tmp_path / "etc", ns=(1_000_000_000, 2_000_000_000))
    with prepared_rootfs(tmp_path, (Mount(target="/var/cache/apt", type="tmpfs"),)) as targets:
        assert (tmp_path / "etc" / "resolv.conf").is_file()
        assert (tmp_path / "etc" / "hostname").is_file()
        assert {p.path.name for p in targets.placeholders} == {"resolv.conf", "hostname"}
    assert sorted(p.name for p in (tmp_path / "etc").iterdir()) == ["hosts"]
    assert (tmp_path / "etc" / "hosts").read_text() == "mine\n"
    assert os.stat(tmp_path / "etc").st_mtime_ns == 2_000_000_000
    assert (tmp_path / "var" / "cache" / "apt").is_dir()


def test_placeholder_parents_stay(tmp_path: Path) -> None:
    # As BuildKit: a secret at /run/secrets/token leaves run/ and run/secrets/ in the layer.
    with prepared_rootfs(tmp_path, ()):
        assert (tmp_path / "etc" / "hosts").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["etc"]
    assert list((tmp_path / "etc").iterdir()) == []
    targets = MountTargets(tmp_path)
    targets.ensure("/run/secrets/token", is_dir=False)
    assert [p.path.name for p in targets.placeholders] == ["token"]
    targets.remove_placeholders()
    assert (tmp_path / "run" / "secrets").is_dir()
    assert list((tmp_path / "run" / "secrets").iterdir()) == []


def test_a_replaced_placeholder_is_not_forklifts(tmp_path: Path) -> None:
    targets = MountTargets(tmp_path)
    targets.ensure("/data/file", is_dir=False)
    (tmp_path / "data" / "file").unlink()
    (tmp_path / "data" / "file").write_text("the step's own file")
    targets.remove_placeholders()
    assert (tmp_path / "data" / "file").read_text() == "the step's own file"


def test_symlinked_target_is_created_where_it_points(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "resolv.conf").symlink_to("/run/resolvconf/resolv.conf")
    with prepared_rootfs(tmp_path, ()):
        assert (tmp_path / "run" / "resolvconf" / "resolv.conf").is_file()
    assert list((tmp_path / "run" / "resolvconf").iterdir()) == []
    assert (tmp_path / "etc" / "resolv.conf").is_symlink()


def test_mount_target_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "data").write_text("a file")
    with (
        pytest.raises(ForkliftError, match="cannot create the mount point /data/cache in the image"),
        prepared_rootfs(tmp_path, (Mount(target="/data/cache", type="tmpfs"),)),
    ):
        pass
    assert sorted(p.name for p in (tmp_path / "etc").iterdir()) == []  # placeholders undone


def test_held_capabilities_decodes_capeff() -> None:
    # This machine's root: everything up to CAP_CHECKPOINT_RESTORE except CAP_SYS_RESOURCE (24).
    mask = ((1 << 41) - 1) & ~(1 << 24)
    caps = held_capabilities(f"Name:\tx\nCapEff:\t{mask:016x}\n")
    assert len(caps) == 40 and "CAP_SYS_RESOURCE" not in caps and "CAP_SYS_ADMIN" in caps
    assert held_capabilities("CapEff:\t00000000a80425fb\n") == tuple(
        sorted(DEFAULT_CAPABILITIES, key=CAPABILITY_NAMES.index)
    )


def test_privileged_config() -> None:
    config = build_config(
        Process(args=("x",), privileged=True),
        Path("/r"),
        (),
        bundle=Path("/b"),
        nofile=10,
        privileged_caps=("CAP_SYS_ADMIN", "CAP_NET_ADMIN"),
    )
    assert config["process"]["capabilities"]["effective"] == ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]
    assert config["linux"]["maskedPaths"] == [] and config["linux"]["readonlyPaths"] == []
    assert config["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    sys_mount = next(m for m in config["mounts"] if m["destination"] == "/sys")
    assert "rw" in sys_mount["options"]
