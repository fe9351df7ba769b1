"""Run a process in a root filesystem with a real OCI runtime (runc, or crun where it works).

forklift writes the bundle's ``config.json`` itself (OCI runtime spec 1.0): mount, pid, ipc and
uts namespaces (plus a network namespace with only loopback for ``network="none"``); /proc, a
tmpfs /dev (the runtime creates null, zero, full, random, urandom, tty, ptmx), /dev/pts, /dev/shm,
/dev/mqueue, a read-only /sys and /sys/fs/cgroup; read-only binds of /etc/resolv.conf,
/etc/hosts and /etc/hostname from files written into the bundle (copies of the host's, plus the
container's hostname and ``extra_hosts``); Docker's default capabilities (held by root only, as
BuildKit does), masked and read-only paths; forklift's default seccomp profile (except for a
privileged process); RLIMIT_NOFILE at the current hard
limit and no other rlimit (raising one needs CAP_SYS_RESOURCE). No cgroup setup is needed: the
container goes into a relative ``forklift/<id>`` cgroup, under the caller's own cgroups. PATH and
HOME get BuildKit's defaults when the process does not set them.

The rootfs contract (what a RUN step's layer may contain afterwards):

* A mount target that does not exist in the rootfs is created there before the run: a directory
  for a directory mount, an empty placeholder file for a file mount (a secret, /etc/hosts, ...).
  Every directory created (the targets and their missing parents, e.g. ``/run/secrets``) stays
  in the layer, as BuildKit's mount-point directories do. The runtime itself creates missing
  ``/proc``, ``/dev`` and ``/sys`` mount points, which stay too (as with BuildKit).
* The placeholder *files* (for /etc/resolv.conf, /etc/hosts, /etc/hostname and file mounts)
  are removed after the run, and the times of the directory that held them are restored, so a
  layer never contains them. Only what forklift itself created is removed: a file that existed
  before (in any lower layer) is never touched. On overlayfs this leaves no whiteout, because a
  placeholder exists only in the upper directory. Overlayfs keeps the copied-up parent (``/etc``)
  in the upper directory, with its original times: BuildKit's layers hold ``etc/`` too.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import resource
import shutil
import stat
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from forklift.errors import ForkliftError, RuntimeNotFound
from forklift.fsatomic import atomic_write
from forklift.records import record
from forklift.runtime.base import DeviceNode, Hook, Mount, OutputSink, Process
from forklift.runtime.rootpath import resolve_in_root
from forklift.runtime.seccomp import default_profile, kernel_has_seccomp
from forklift.runtime.users import user_home

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's default capability set (moby oci/caps/defaults.go, as documented in `docker run`).
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

# Files forklift provides to every container, bind-mounted read-only from the bundle directory.
NETWORK_FILES: tuple[str, ...] = ("/etc/resolv.conf", "/etc/hosts", "/etc/hostname")

CANDIDATES: tuple[str, ...] = ("runc", "crun")

# The device nodes a privileged (``RUN --security=insecure``) container gets, as BuildKit's
# insecure mode gives them: kmsg (dmesg), cuse, fuse, kvm, tun and loop-control, plus the loop
# devices up to 7 past the first free one (``insecure_devices``), so losetup and FUSE work.
INSECURE_DEVICES: tuple[DeviceNode, ...] = (
    DeviceNode(path="/dev/kmsg", type="c", major=1, minor=11),
    DeviceNode(path="/dev/cuse", type="c", major=10, minor=203),
    DeviceNode(path="/dev/fuse", type="c", major=10, minor=229),
    DeviceNode(path="/dev/kvm", type="c", major=10, minor=232),
    DeviceNode(path="/dev/net/tun", type="c", major=10, minor=200),
    DeviceNode(path="/dev/loop-control", type="c", major=10, minor=237),
)
_LOOP_CTL_GET_FREE = 0x4C82  # linux/loop.h


def insecure_devices(free_loop: int) -> tuple[DeviceNode, ...]:
    """The device nodes of a privileged container when ``/dev/loop<free_loop>`` is the first free loop."""
    loops = tuple(DeviceNode(path=f"/dev/loop{i}", type="b", major=7, minor=i) for i in range(free_loop + 8))
    return INSECURE_DEVICES + loops


def free_loop_device() -> int:
    """The number of the host's first free loop device (0 when it cannot be asked)."""
    try:
        fd = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        return max(int(fcntl.ioctl(fd, _LOOP_CTL_GET_FREE)), 0)
    except OSError:
        return 0
    finally:
        os.close(fd)


# Capability numbers (linux/capability.h) to the names the OCI spec uses.
CAPABILITY_NAMES: tuple[str, ...] = tuple(
    "CAP_" + name
    for name in [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ]
)


def held_capabilities(status_text: str) -> tuple[str, ...]:
    """The names of the effective capabilities in a /proc/<pid>/status text (known ones only).

    A privileged container gets these, not every capability there is: asking the runtime for
    one the caller lacks (CAP_SYS_RESOURCE on these machines) makes the container fail to start.
    """
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            mask = int(line.split()[1], 16)
            return tuple(name for bit, name in enumerate(CAPABILITY_NAMES) if mask >> bit & 1)
    return DEFAULT_CAPABILITIES


def _system_mounts(*, privileged: bool = False) -> list[dict[str, Any]]:
    """The mounts every container gets, before forklift's files and the caller's mounts."""
    sys_mode = "rw" if privileged else "ro"
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", sys_mode],
        },
        {
            # The container's own cgroups, read-only (as Docker and BuildKit mount them).
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", sys_mode],
        },
    ]


def _mount_entry(mount: Mount) -> dict[str, Any]:
    options = list(mount.options)
    if mount.type == "bind" and not ({"bind", "rbind"} & set(options)):
        options.insert(0, "rbind")
    source = mount.source if mount.source is not None else mount.type
    return {"destination": mount.target, "type": mount.type, "source": source, "options": options}


def build_config(
    process: Process,
    rootfs: Path,
    mounts: tuple[Mount, ...],
    *,
    bundle: Path,
    nofile: int,
    home: str | None = None,
    privileged_caps: tuple[str, ...] = (),
    seccomp: bool = True,
    free_loop: int = 0,
) -> dict[str, Any]:
    """The OCI runtime ``config.json`` document for one run (pure: no I/O).

    ``bundle`` holds the resolv.conf/hosts/hostname files; ``nofile`` is the RLIMIT_NOFILE to set
    (soft = hard), which must not exceed the caller's hard limit. PATH (the usual default) and
    HOME (``home``) are added to the environment when the process does not set them, as
    BuildKit does. A privileged process gets ``privileged_caps`` (see ``held_capabilities``).
    and BuildKit's insecure device nodes (``insecure_devices(free_loop)``). Other processes get
    forklift's default seccomp profile (``runtime.seccomp``) when ``seccomp`` is true (the kernel
    filters system calls).
    """
    env = [f"{k}={v}" for k, v in process.env]
    names = {k for k, _ in process.env}
    if "PATH" not in names:
        env.insert(0, f"PATH={DEFAULT_PATH}")
    if home is not None and "HOME" not in names:
        env.append(f"HOME={home}")
    caps = list(privileged_caps or DEFAULT_CAPABILITIES) if process.privileged else list(DEFAULT_CAPABILITIES)
    # A non-root user keeps the bounding set only (as Docker does since 20.10): it can regain
    # capabilities through setuid binaries (sudo), but does not hold them by default.
    effective = caps if process.uid == 0 else []
    user: dict[str, Any] = {"uid": process.uid, "gid": process.gid}
    if process.additional_gids:
        user["additionalGids"] = list(process.additional_gids)
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if process.network == "none":
        namespaces.append({"type": "network"})
    config_mounts = _system_mounts(privileged=process.privileged)
    for path in NETWORK_FILES:
        config_mounts.append(
            {
                "destination": path,
                "type": "bind",
                "source": str(bundle / Path(path).name),
                "options": ["rbind", "ro", "nosuid", "nodev", "noexec"],
            }
        )
    config_mounts.extend(_mount_entry(m) for m in mounts)
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": {
            "devices": [
                {"allow": process.privileged, "access": "rwm"},
                *(_device_rule(d) for d in process.devices if d.type in ("c", "b")),
            ]
        },
        "maskedPaths": [] if process.privileged else list(MASKED_PATHS),
        "readonlyPaths": [] if process.privileged else list(READONLY_PATHS),
    }
    devices = (insecure_devices(free_loop) if process.privileged else ()) + process.devices
    if devices:
        linux["devices"] = [_device_entry(d) for d in devices]
    if seccomp and not process.privileged:
        linux["seccomp"] = default_profile()
    config: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": process.terminal,
            "user": user,
            "args": list(process.args),
            "env": env,
            "cwd": process.cwd or "/",
            "capabilities": {"bounding": caps, "effective": effective, "permitted": effective},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": False,
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": process.hostname,
        "mounts": config_mounts,
        "linux": linux,
    }
    if process.hooks:
        config["hooks"] = _hooks(process.hooks)
    return config


def _device_entry(device: DeviceNode) -> dict[str, Any]:
    """A ``linux.devices`` entry: the node the runtime creates in the container."""
    entry: dict[str, Any] = {
        "path": device.path,
        "type": device.type,
        "major": device.major,
        "minor": device.minor,
    }
    for key, value in (("fileMode", device.file_mode), ("uid", device.uid), ("gid", device.gid)):
        if value is not None:
            entry[key] = value
    return entry


def _device_rule(device: DeviceNode) -> dict[str, Any]:
    """The device cgroup rule that lets the container use ``device``."""
    return {
        "allow": True,
        "type": device.type,
        "major": device.major,
        "minor": device.minor,
        "access": device.permissions or "rwm",
    }


def _hooks(hooks: tuple[Hook, ...]) -> dict[str, list[dict[str, Any]]]:
    """The ``hooks`` object: each stage's hooks in order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for hook in hooks:
        entry: dict[str, Any] = {"path": hook.path}
        if hook.args:
            entry["args"] = list(hook.args)
        if hook.env:
            entry["env"] = list(hook.env)
        if hook.timeout is not None:
            entry["timeout"] = hook.timeout
        out.setdefault(hook.stage, []).append(entry)
    return out


def _host_file(path: str, fallback: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return fallback


def write_network_files(bundle: Path, process: Process) -> None:
    """Write resolv.conf, hosts and hostname for the container into ``bundle``."""
    resolv = _host_file("/etc/resolv.conf", "")
    hosts = _host_file("/etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    if hosts and not hosts.endswith("\n"):
        hosts += "\n"
    hosts += f"127.0.1.1\t{process.hostname}\n"
    hosts += "".join(f"{ip}\t{name}\n" for name, ip in process.extra_hosts.items())
    (bundle / "resolv.conf").write_text(resolv)
    (bundle / "hosts").write_text(hosts)
    (bundle / "hostname").write_text(process.hostname + "\n")


@dataclass
class _CreatedPath:
    path: Path
    is_dir: bool
    inode: int
    restore_parent_times: tuple[int, int] | None  # (atime_ns, mtime_ns) of the parent before


@dataclass
class MountTargets:
    """Mount targets created in a rootfs before a run; ``remove_placeholders`` undoes the files."""

    rootfs: Path
    created: list[_CreatedPath] = field(default_factory=list)
    placeholders: list[_CreatedPath] = field(default_factory=list)

    def ensure(self, target: str, *, is_dir: bool) -> None:
        """Create ``target`` (and its missing parents) in the rootfs if it does not exist.

        Directories (the target of a directory mount, and missing parents) stay after the run,
        as BuildKit's mount-point directories do. A file target is a placeholder that
        ``remove_placeholders`` removes again.
        """
        host = resolve_in_root(self.rootfs, target)
        if os.path.lexists(host):
            return
        missing: list[Path] = []
        probe = host
        while not os.path.lexists(probe) and probe != self.rootfs:
            missing.append(probe)
            probe = probe.parent
        for index, path in enumerate(reversed(missing)):
            if index == len(missing) - 1 and not is_dir:
                parent_stat = os.stat(path.parent)
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
                os.close(fd)
                times = (parent_stat.st_atime_ns, parent_stat.st_mtime_ns)
                self.placeholders.append(_CreatedPath(path, False, os.lstat(path).st_ino, times))
            else:
                path.mkdir(mode=0o755)
                self.created.append(_CreatedPath(path, True, os.lstat(path).st_ino, None))

    def remove_placeholders(self) -> None:
        """Remove exactly the placeholder files created, newest first, and restore parents' times.

        A path that is no longer the empty file forklift created (same inode, still empty) is not
        forklift's any more and is left alone.
        """
        for entry in reversed(self.placeholders):
            try:
                st = os.lstat(entry.path)
            except FileNotFoundError:
                continue
            # Inode numbers are reused, so an empty regular file is required too.
            if st.st_ino != entry.inode or not stat.S_ISREG(st.st_mode) or st.st_size != 0:
                continue
            try:
                entry.path.unlink()
            except OSError:
                continue  # busy: it belongs to the layer
            if entry.restore_parent_times is not None:
                with suppress(OSError):
                    os.utime(entry.path.parent, ns=entry.restore_parent_times, follow_symlinks=False)
        self.placeholders.clear()


def _is_file_mount(mount: Mount) -> bool:
    return mount.type == "bind" and mount.source is not None and not os.path.isdir(mount.source)


def _ensure(targets: MountTargets, target: str, *, is_dir: bool) -> None:
    try:
        targets.ensure(target, is_dir=is_dir)
    except OSError as err:
        raise ForkliftError(
            f"cannot create the mount point {target} in the image: {err.strerror}",
            hint="a path on the way is a file, not a directory" if err.errno == errno.ENOTDIR else None,
        ) from err


@contextmanager
def prepared_rootfs(rootfs: Path, mounts: tuple[Mount, ...]) -> Iterator[MountTargets]:
    """Create the mount targets the run needs in ``rootfs``; remove the placeholders afterwards."""
    targets = MountTargets(rootfs)
    try:
        for path in NETWORK_FILES:
            _ensure(targets, path, is_dir=False)
        for mount in mounts:
            # A file target (a secret) is a placeholder like /etc/hosts; a directory target stays.
            _ensure(targets, mount.target, is_dir=not _is_file_mount(mount))
        yield targets
    finally:
        targets.remove_placeholders()


def _runtime_errors(log: Path) -> list[str]:
    """The error messages the runtime itself logged (JSON lines; the container's output is not here)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    errors = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("level") in ("error", "fatal"):
            errors.append(str(record.get("msg", "")))
    return errors


def _exit_status_from_log(log: Path, status: int) -> int:
    """Map a runtime's own start failure to the shell's conventions (127 not found, 126 not exec)."""
    if status == 0:
        return status
    text = " ".join(_runtime_errors(log)).lower()
    if not text:
        return status  # the process ran and exited with this status
    if "not found" in text or "no such file or directory" in text:
        return 127
    if "permission denied" in text:
        return 126
    return status


@record
class OciRuntime:
    """A working OCI runtime binary; ``find_runtime`` makes one after a real probe run.

    ``state_dir`` is the runtime's ``--root`` (its container state), kept separate from other
    users of runc; ``bundle_dir`` is where per-run bundles are written (a temporary dir each run).
    """

    binary: Path
    name: str
    version: str
    state_dir: Path = Path("/run/forklift/runtime")
    bundle_dir: Path | None = None

    def _base_args(self) -> list[str]:
        return [str(self.binary), "--root", str(self.state_dir)]

    def run(
        self,
        process: Process,
        rootfs: Path,
        mounts: tuple[Mount, ...] = (),
        *,
        output: OutputSink | None = None,
    ) -> int:
        """Run ``process`` in ``rootfs`` plus ``mounts``; stream stdout+stderr; return exit status.

        stdin is /dev/null; stdout and stderr share one pipe whose data reaches ``output`` as it
        arrives (from a reader thread). A process the runtime cannot start (command not found, not
        executable) returns 127 or 126, as a shell would, with the runtime's message in the output.
        Each run has a unique container id, and the container is always deleted afterwards, also
        when the caller is interrupted (KeyboardInterrupt). ``process.terminal`` is ignored here.
        """
        with self._bundle(replace(process, terminal=False), rootfs, mounts) as (bundle, container_id):
            read_fd, write_fd = os.pipe()
            reader: _Pump | None = None
            try:
                try:
                    proc = self._spawn(bundle, container_id, subprocess.DEVNULL, write_fd, write_fd)
                finally:
                    os.close(write_fd)
                reader = _Pump(read_fd, output)
                reader.start()
                status = self._wait(proc, container_id, grace=0.0)
                reader.join()
                if reader.error is not None:
                    raise reader.error
                return _exit_status_from_log(bundle / "runtime.log", status)
            finally:
                if reader is None:
                    os.close(read_fd)  # otherwise the reader owns and closes it
                else:
                    reader.join(timeout=5)

    def run_attached(
        self,
        process: Process,
        rootfs: Path,
        mounts: tuple[Mount, ...] = (),
        *,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> int:
        """Run with the caller's file descriptors (``None``: inherit this process's); for ``forklift run``.

        With ``process.terminal`` the runtime allocates a pseudo-terminal and relays it to its own
        stdin/stdout, which should then be the user's terminal (``-it``). On Ctrl-C the runtime
        forwards the signal to the container, which gets 10 seconds to exit before it is killed;
        the container's exit status is returned either way.
        """
        with self._bundle(process, rootfs, mounts) as (bundle, container_id):
            proc = self._spawn(bundle, container_id, stdin, stdout, stderr)
            status = self._wait(proc, container_id, grace=10.0)
            return _exit_status_from_log(bundle / "runtime.log", status)

    @contextmanager
    def _bundle(
        self, process: Process, rootfs: Path, mounts: tuple[Mount, ...]
    ) -> Iterator[tuple[Path, str]]:
        """A bundle directory with config.json and the network files; the rootfs prepared; cleanup."""
        rootfs = rootfs.resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.bundle_dir is not None:
            self.bundle_dir.mkdir(parents=True, exist_ok=True)
        bundle = Path(tempfile.mkdtemp(prefix="forklift-bundle-", dir=self.bundle_dir))
        container_id = f"forklift-{uuid.uuid4().hex[:20]}"
        try:
            write_network_files(bundle, process)
            nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            if nofile == resource.RLIM_INFINITY:
                nofile = 1 << 20
            home = None if any(k == "HOME" for k, _ in process.env) else user_home(rootfs, process.uid)
            status = Path("/proc/self/status").read_text()
            privileged_caps = held_capabilities(status) if process.privileged else ()
            config = build_config(
                process,
                rootfs,
                mounts,
                bundle=bundle,
                nofile=nofile,
                home=home,
                privileged_caps=privileged_caps,
                seccomp=kernel_has_seccomp(status),
                free_loop=free_loop_device() if process.privileged else 0,
            )
            config["linux"]["cgroupsPath"] = f"forklift/{container_id}"
            (bundle / "config.json").write_text(json.dumps(config))
            with prepared_rootfs(rootfs, mounts):
                try:
                    yield bundle, container_id
                finally:
                    if (self.state_dir / container_id).exists():
                        self._quiet([*self._base_args(), "delete", "--force", container_id])
        finally:
            shutil.rmtree(bundle, ignore_errors=True)

    def _spawn(
        self, bundle: Path, container_id: str, stdin: int | None, stdout: int | None, stderr: int | None
    ) -> subprocess.Popen[bytes]:
        argv = [*self._base_args(), "--log", str(bundle / "runtime.log"), "--log-format", "json"]
        argv += ["run", "--bundle", str(bundle), container_id]
        return subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr)

    def _wait(self, proc: subprocess.Popen[bytes], container_id: str, *, grace: float) -> int:
        """The runtime's exit status; if interrupted, the container is killed (after ``grace`` s)."""
        try:
            return proc.wait()
        except KeyboardInterrupt:
            if grace > 0:
                with suppress(subprocess.TimeoutExpired):
                    return proc.wait(timeout=grace)
            raise
        finally:
            if proc.poll() is None:
                self._quiet([*self._base_args(), "kill", container_id, "KILL"])
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    @staticmethod
    def _quiet(argv: list[str]) -> None:
        subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False)


class _Pump(threading.Thread):
    """Copies a pipe to ``output`` as data arrives, until every writer has closed it.

    An exception from ``output`` is kept (and re-raised by the caller) while the pipe is still
    drained, so a failing sink never blocks the container on a full pipe.
    """

    def __init__(self, fd: int, output: Callable[[bytes], None] | None) -> None:
        super().__init__(name="forklift-output", daemon=True)
        self.fd = fd
        self.output = output
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while chunk := os.read(self.fd, 65536):
                if self.output is not None and self.error is None:
                    try:
                        self.output(chunk)
                    except BaseException as err:  # re-raised in the caller's thread
                        self.error = err
        finally:
            with suppress(OSError):
                os.close(self.fd)


def _version(binary: Path) -> str:
    try:
        done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unknown ({err})"
    first = done.stdout.strip().splitlines()
    return first[0] if first else "unknown"


def probe_runtime(runtime: OciRuntime) -> str | None:
    """Run a trivial container (the host's /bin/true on read-only binds); None if it worked, else why."""
    with tempfile.TemporaryDirectory(prefix="forklift-probe-", dir=runtime.bundle_dir) as tmp:
        rootfs = Path(tmp) / "rootfs"
        rootfs.mkdir()
        mounts = tuple(
            Mount(target=d, type="bind", source=d, options=("rbind", "ro"))
            for d in ("/bin", "/usr", "/lib", "/lib64", "/lib32", "/libx32")
            if os.path.isdir(d)
        )
        chunks: list[bytes] = []
        try:
            status = runtime.run(
                Process(args=("/bin/true",), network="host"), rootfs, mounts, output=chunks.append
            )
        except OSError as err:
            return str(err)
        if status != 0:
            text = b"".join(chunks).decode(errors="replace").strip()
            return f"exit status {status}: {text[-500:]}" if text else f"exit status {status}"
        return None


def find_runtime(
    name: str | None = None, *, state_dir: Path | None = None, bundle_dir: Path | None = None
) -> OciRuntime:
    """The first OCI runtime that really runs a container here: ``name`` (a name or path) or runc, crun.

    Each candidate is probed by running a trivial container once; the returned object is the
    proof. Raises ``RuntimeNotFound`` naming every candidate and why it failed.
    """
    candidates = [name] if name else list(CANDIDATES)
    failures: list[str] = []
    for candidate in candidates:
        found = shutil.which(candidate)
        if found is None:
            failures.append(f"{candidate}: not found" + ("" if "/" in candidate else " on PATH"))
            continue
        binary = Path(found)
        runtime = OciRuntime(
            binary=binary,
            name=binary.name,
            version=_version(binary),
            state_dir=state_dir if state_dir is not None else OciRuntime.state_dir,
            bundle_dir=bundle_dir,
        )
        why = probe_runtime(runtime)
        if why is None:
            return runtime
        failures.append(f"{candidate} ({binary}) cannot run a container here: {why}")
    raise RuntimeNotFound(
        "no working OCI runtime: " + "; ".join(failures),
        hint="install runc (apt-get install runc) or name a working one with --runtime; "
        "crun 1.8 fails on hybrid cgroup v1/v2 hosts",
    )


def remembered_runtime(record: Path, name: str | None, *, state_dir: Path, bundle_dir: Path) -> OciRuntime:
    """``find_runtime``, with its answer remembered in the JSON file ``record``.

    The record is trusted while it names the wanted runtime and its binary is still the same file
    (size, mtime, inode), so builds and runs do not pay for a trial container each time.
    """
    try:
        doc = json.loads(record.read_text())
        binary = Path(doc["binary"])
        st = binary.stat()
        wanted = name is None or name in (doc["name"], str(binary))
        if wanted and [st.st_size, st.st_mtime_ns, st.st_ino] == doc["stat"] and doc["name"] in CANDIDATES:
            return OciRuntime(
                binary=binary,
                name=doc["name"],
                version=doc["version"],
                state_dir=state_dir,
                bundle_dir=bundle_dir,
            )
    except (OSError, ValueError, KeyError, TypeError):
        pass
    runtime = find_runtime(name, state_dir=state_dir, bundle_dir=bundle_dir)
    st = runtime.binary.stat()
    doc = {
        "binary": str(runtime.binary),
        "name": runtime.name,
        "version": runtime.version,
        "stat": [st.st_size, st.st_mtime_ns, st.st_ino],
    }
    atomic_write(record, json.dumps(doc), durable=False)
    return runtime
