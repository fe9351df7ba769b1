"""The OCI runtime end to end: real runc over a real overlayfs on the busybox rootfs."""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from forklift.errors import RuntimeNotFound
from forklift.runtime.base import Mount, Process
from forklift.runtime.oci import OciRuntime, find_runtime
from forklift.runtime.users import resolve_user
from forklift.snapshot.overlay import mount_overlay

pytestmark = pytest.mark.e2e


@pytest.fixture
def runtime(oci_runtime: OciRuntime) -> OciRuntime:
    return oci_runtime


class Layer:
    """A RUN step's filesystem: busybox as the read-only lower, a fresh upper."""

    def __init__(self, root: Path, upper: Path) -> None:
        self.root = root
        self.upper = upper


@pytest.fixture
def layer(busybox_rootfs: Path, tmp_path: Path) -> Iterator[Layer]:
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    with mount_overlay([busybox_rootfs], upper, work, merged) as root:
        yield Layer(root, upper)


def run(
    runtime: OciRuntime, root: Path, script: str, mounts: tuple[Mount, ...] = (), **kw: object
) -> tuple[int, str]:
    chunks: list[bytes] = []
    process = Process(args=("/bin/sh", "-c", script), **kw)  # type: ignore[arg-type]
    status = runtime.run(process, root, mounts, output=chunks.append)
    return status, b"".join(chunks).decode()


def test_echo_hi(runtime: OciRuntime, layer: Layer) -> None:
    assert run(runtime, layer.root, "echo hi") == (0, "hi\n")


def test_exit_status_propagates(runtime: OciRuntime, layer: Layer) -> None:
    assert run(runtime, layer.root, "echo oops >&2; exit 3") == (3, "oops\n")
    chunks: list[bytes] = []
    missing = runtime.run(Process(args=("no-such-command",)), layer.root, output=chunks.append)
    assert missing == 127
    assert b"no-such-command" in b"".join(chunks)


def test_output_streams_while_the_process_runs(runtime: OciRuntime, layer: Layer, tmp_path: Path) -> None:
    # The process waits for a file that only the output callback creates, after seeing "first":
    # if output were delivered at exit only, the process would time out instead.
    signals = tmp_path / "signals"
    signals.mkdir()

    def sink(chunk: bytes) -> None:
        if b"first" in chunk:
            (signals / "go").touch()

    script = "echo first; i=0; while [ ! -e /sig/go ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done; "
    script += "[ -e /sig/go ] && echo second || echo timeout"
    chunks: list[bytes] = []

    def record(chunk: bytes) -> None:
        chunks.append(chunk)
        sink(chunk)

    mounts = (Mount(target="/sig", source=str(signals)),)
    status = runtime.run(Process(args=("/bin/sh", "-c", script)), layer.root, mounts, output=record)
    assert status == 0
    assert b"".join(chunks) == b"first\nsecond\n"


def test_env_cwd_and_user(runtime: OciRuntime, layer: Layer, busybox_rootfs: Path) -> None:
    uid, gid, groups = resolve_user(busybox_rootfs, "app")
    assert (uid, gid) == (1000, 1000)
    status, out = run(
        runtime,
        layer.root,
        'echo "$GREETING"; pwd; id -u; id -g; id -G; echo "$PATH"; echo "$HOME"; '
        "grep CapEff /proc/self/status",
        env=(("GREETING", "hello world"),),
        cwd="/tmp",
        uid=uid,
        gid=gid,
        additional_gids=(*groups, 65534),
    )
    assert status == 0
    lines = out.splitlines()
    assert lines[:4] == ["hello world", "/tmp", "1000", "1000"]
    assert set(lines[4].split()) == {"1000", "65534"}
    assert lines[5] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert lines[6] == "/home/app"  # from the image's /etc/passwd, as BuildKit sets it
    assert lines[7].split() == ["CapEff:", "0000000000000000"]  # a non-root user holds none


def test_root_has_dockers_default_capabilities(runtime: OciRuntime, layer: Layer) -> None:
    # The values BuildKit's RUN shows on this machine (dockerd 20.10): Docker's default set.
    status, out = run(runtime, layer.root, "grep -E 'Cap(Eff|Bnd)|NoNewPrivs' /proc/self/status; echo $HOME")
    assert status == 0
    assert out.split() == [
        "CapEff:",
        "00000000a80425fb",
        "CapBnd:",
        "00000000a80425fb",
        "NoNewPrivs:",
        "0",
        "/root",
    ]


def test_missing_working_directory_is_created(runtime: OciRuntime, layer: Layer) -> None:
    assert run(runtime, layer.root, "pwd", cwd="/srv/app") == (0, "/srv/app\n")


def test_network_none_has_only_loopback(runtime: OciRuntime, layer: Layer) -> None:
    script = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"
    status, out = run(runtime, layer.root, script, network="none")
    assert (status, out.split()) == (0, ["lo"])
    status, host_out = run(runtime, layer.root, script, network="host")
    assert status == 0
    host_ifaces = [line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]]
    assert sorted(host_out.split()) == sorted(host_ifaces)


def test_network_files_inside_but_not_in_the_layer(runtime: OciRuntime, layer: Layer) -> None:
    status, out = run(runtime, layer.root, "cat /etc/resolv.conf; echo ---; cat /etc/hostname; hostname")
    assert status == 0
    resolv, names = out.split("---\n")
    assert resolv == Path("/etc/resolv.conf").read_text()
    assert names == "forklift\nforklift\n"
    for name in ("resolv.conf", "hosts", "hostname"):
        assert not os.path.lexists(layer.upper / "etc" / name)
        assert not os.path.lexists(layer.root / "etc" / name)
    # /etc was copied up for the placeholders; its times are restored, so it reads unchanged.
    lower_etc = os.stat(layer.root / "etc")
    assert os.stat(layer.upper / "etc").st_mtime_ns == lower_etc.st_mtime_ns


def test_system_mounts(runtime: OciRuntime, layer: Layer) -> None:
    status, out = run(
        runtime, layer.root, "cat /proc/mounts; ls /dev; touch /sys/x 2>/dev/null || echo sys-ro"
    )
    assert status == 0
    mounted = {line.split()[1]: line.split()[2] for line in out.splitlines() if len(line.split()) > 3}
    for target, fstype in {
        "/proc": "proc",
        "/dev": "tmpfs",
        "/dev/pts": "devpts",
        "/dev/shm": "tmpfs",
        "/dev/mqueue": "mqueue",
        "/sys": "sysfs",
    }.items():
        assert mounted.get(target) == fstype, target
    assert any(t.startswith("/sys/fs/cgroup/") for t in mounted)
    for node in ("null", "zero", "full", "random", "urandom", "tty", "pts", "shm"):
        assert node in out.split()
    assert "sys-ro" in out


def test_network_files_are_read_only(runtime: OciRuntime, layer: Layer) -> None:
    status, out = run(runtime, layer.root, "echo x >> /etc/hosts")
    assert status != 0
    assert "Read-only" in out


def test_existing_network_file_is_kept(runtime: OciRuntime, layer: Layer) -> None:
    (layer.root / "etc" / "hosts").write_text("# the image's own\n")
    status, out = run(runtime, layer.root, "cat /etc/hosts")
    assert status == 0
    assert "127.0.1.1\tforklift" in out  # forklift's file is mounted over it while running
    assert (layer.upper / "etc" / "hosts").read_text() == "# the image's own\n"


def test_created_file_lands_in_upper_and_deletion_is_a_whiteout(runtime: OciRuntime, layer: Layer) -> None:
    status, _ = run(runtime, layer.root, "echo data > /root/new.txt && rm /bin/vi && mkdir -p /opt/x")
    assert status == 0
    assert (layer.upper / "root" / "new.txt").read_text() == "data\n"
    whiteout = os.lstat(layer.upper / "bin" / "vi")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
    assert (layer.upper / "opt" / "x").is_dir()


def test_mount_target_directories_stay_and_file_placeholders_go(
    runtime: OciRuntime, layer: Layer, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t")
    mounts = (
        Mount(target="/root/.cache/tool", type="tmpfs", options=("mode=1777",)),
        Mount(target="/run/secrets/token", source=str(secret), options=("rbind", "ro")),
    )
    status, out = run(
        runtime, layer.root, "echo cached > /root/.cache/tool/f; cat /run/secrets/token", mounts
    )
    assert (status, out) == (0, "s3cr3t")
    assert (layer.upper / "root" / ".cache" / "tool").is_dir()
    assert list((layer.upper / "root" / ".cache" / "tool").iterdir()) == []  # tmpfs content is gone
    # As BuildKit: the directories made for the secret stay, its placeholder file does not.
    assert list((layer.upper / "run" / "secrets").iterdir()) == []


def test_first_run_layer_matches_buildkits_entries(runtime: OciRuntime, layer: Layer) -> None:
    # BuildKit's layer for `RUN echo hi` on this busybox base (checked with dockerd 20.10):
    # dev/, etc/, proc/, sys/ (mount points the runtime made, etc/ copied up), nothing else.
    assert run(runtime, layer.root, "echo hi") == (0, "hi\n")
    entries = sorted(str(p.relative_to(layer.upper)) for p in layer.upper.rglob("*"))
    assert entries == ["dev", "etc", "proc", "sys"]


def test_bind_mount_is_visible_and_read_only_when_asked(
    runtime: OciRuntime, layer: Layer, tmp_path: Path
) -> None:
    src = tmp_path / "ctx"
    src.mkdir()
    (src / "a.txt").write_text("from host")
    mounts = (Mount(target="/ctx", source=str(src), options=("rbind", "ro")),)
    status, out = run(runtime, layer.root, "cat /ctx/a.txt; touch /ctx/b 2>/dev/null || echo ro", mounts)
    assert (status, out) == (0, "from hostro\n")


def test_interrupted_run_deletes_the_container(runtime: OciRuntime, layer: Layer) -> None:
    class Interrupted(Exception):
        pass

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(Interrupted):
            runtime.run(Process(args=("/bin/sleep", "30")), layer.root)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert [p.name for p in runtime.state_dir.iterdir()] == []


def test_unknown_runtime_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeNotFound, match="no-such-runtime: not found"):
        find_runtime("no-such-runtime", state_dir=tmp_path)
    fake = tmp_path / "fake-runtime"
    fake.write_text("#!/bin/sh\necho broken >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(RuntimeNotFound, match="cannot run a container here: exit status 1: broken"):
        find_runtime(str(fake), state_dir=tmp_path)


def test_run_attached_uses_the_callers_descriptors(runtime: OciRuntime, layer: Layer, tmp_path: Path) -> None:
    (tmp_path / "in").write_text("from stdin\n")
    with (
        open(tmp_path / "in", "rb") as stdin,
        open(tmp_path / "out", "wb") as stdout,
        open(tmp_path / "err", "wb") as stderr,
    ):
        status = runtime.run_attached(
            Process(args=("/bin/sh", "-c", "cat; echo to-err >&2; exit 4")),
            layer.root,
            stdin=stdin.fileno(),
            stdout=stdout.fileno(),
            stderr=stderr.fileno(),
        )
    assert status == 4
    assert (tmp_path / "out").read_text() == "from stdin\n"
    assert (tmp_path / "err").read_text() == "to-err\n"


def test_run_attached_with_a_terminal(runtime: OciRuntime, layer: Layer) -> None:
    import pty

    master, slave = pty.openpty()
    try:
        status = runtime.run_attached(
            Process(args=("/bin/sh", "-c", "tty; [ -t 0 ] && echo interactive"), terminal=True),
            layer.root,
            stdin=slave,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        slave = -1
        data = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every slave descriptor is closed
                break
            if not chunk:
                break
            data += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert status == 0
    assert b"/dev/pts/0" in data
    assert b"interactive" in data


def test_a_command_that_cannot_run_is_126(runtime: OciRuntime, layer: Layer) -> None:
    chunks: list[bytes] = []
    status = runtime.run(Process(args=("/etc/passwd",)), layer.root, output=chunks.append)
    assert status == 126
    assert b"permission denied" in b"".join(chunks)
    # A process that itself prints such words and fails keeps its own status.
    assert run(runtime, layer.root, "echo 'sh: x: not found: permission denied'; exit 2")[0] == 2


def test_concurrent_runs_are_independent(runtime: OciRuntime, busybox_rootfs: Path, tmp_path: Path) -> None:
    # Independent stages run at the same time: separate containers, outputs and upper dirs.
    from concurrent.futures import ThreadPoolExecutor

    def one(index: int) -> tuple[int, str, bool]:
        base = tmp_path / f"s{index}"
        with mount_overlay([busybox_rootfs], base / "upper", base / "work", base / "merged") as root:
            status, out = run(runtime, root, f"sleep 0.2; echo {index} > /mine; echo run-{index}")
        return status, out, (base / "upper" / "mine").read_text() == f"{index}\n"

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(one, range(3)))
    assert results == [(0, f"run-{i}\n", True) for i in range(3)]


def test_privileged_process_holds_the_callers_capabilities(runtime: OciRuntime, layer: Layer) -> None:
    status, out = run(
        runtime,
        layer.root,
        "grep CapEff /proc/self/status; mount -o remount,rw /sys && echo sys-rw",
        privileged=True,
    )
    assert status == 0, out
    own = next(
        line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("CapEff:")
    )
    assert out.splitlines()[0].split()[1] == own.split()[1]
    assert out.splitlines()[1] == "sys-rw"
