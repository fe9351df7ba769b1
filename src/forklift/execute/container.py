"""``forklift run``: one container from a stored image, attached to the caller, gone when it exits.

The image's unpacked layers (the same per-diff_id snapshots the build engine uses, unpacked on
first use) are the overlay lowers; an empty scratch upper and work dir under the store root take
every write, and the whole scratch dir is removed afterwards, so a container never changes the
image or its snapshots. There is no container state to keep: every run is ``--rm``.

Signals: SIGTERM, SIGINT and SIGHUP sent to forklift go to the container's process. A container
whose main process does not catch that signal is killed at once (as its PID 1, the kernel would
never deliver it); one that catches it gets ``stop_timeout`` seconds before it is killed, as
``docker stop`` does. A second signal kills it at once. The exit status is the container's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from forklift.errors import ForkliftError, ImageError, did_you_mean
from forklift.execute.runtime_setup import probed_runtime
from forklift.execute.snapshots import SnapshotCache
from forklift.oci.image import StoreImage, image_config, image_id, image_layers, load_image
from forklift.oci.model import Digest, Platform
from forklift.oci.store import Store
from forklift.records import record
from forklift.runtime.base import Mount, NetworkMode

if TYPE_CHECKING:
    from forklift.runtime.oci import OciRuntime

# Where each run's runtime state lives: one private directory per run, so forklift can find and
# signal exactly its own container without knowing the id the runtime call chose.
RUN_STATE_ROOT = Path("/run/forklift/run")
FORWARDED_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@record(kw_only=True)
class ContainerOptions:
    """What ``forklift run`` was asked for, beyond the image (docker run's flags)."""

    command: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None  # --entrypoint; () clears the image's
    env: tuple[tuple[str, str], ...] = ()  # -e / --env-file, in order (later wins)
    user: str | None = None
    workdir: str | None = None
    mounts: tuple[Mount, ...] = ()  # -v
    network: NetworkMode = "host"
    terminal: bool = False
    interactive: bool = False
    hostname: str = "forklift"
    runtime_name: str | None = None
    platform: Platform | None = None
    stop_timeout: float = 10.0


# ---- finding the image ---------------------------------------------------------------------------------


def find_image(store: Store, text: str, *, platform: Platform | None = None) -> StoreImage:
    """The stored image ``text`` names: a name (``busybox``, ``busybox:1``, canonical), a manifest
    digest, or an image ID (config digest) or a unique prefix of one.

    Raises ``ImageError`` with a "did you mean" hint naming the store's images.
    """
    from forklift.oci.registry.reference import familiar_name, parse_reference

    ref = None
    with contextlib.suppress(ImageError):
        ref = parse_reference(text)
    if ref is not None and store.get_ref(str(ref)) is not None:
        return load_image(store, str(ref), platform=platform)
    hexpart = text.removeprefix("sha256:")
    if len(hexpart) >= 4 and all(c in "0123456789abcdef" for c in hexpart):
        if text.startswith("sha256:") and len(hexpart) == 64 and store.has(Digest.parse(text)):
            with contextlib.suppress(ImageError):  # else a config digest (an image ID)
                return load_image(store, text, platform=platform)
        matches: dict[Digest, StoreImage] = {}
        for digest in set(store.list_refs().values()):
            with contextlib.suppress(ImageError):
                img = load_image(store, digest, platform=platform)
                if image_id(img).hex.startswith(hexpart):
                    matches[img.digest] = img
        if len(matches) > 1:
            raise ImageError(f"image ID {text} is ambiguous: it matches {len(matches)} images")
        if matches:
            return next(iter(matches.values()))
    known = sorted({familiar_name(n) for n in store.list_refs()})
    hint = did_you_mean(ref.familiar(), known) if ref is not None else None
    if hint is None:
        if known:
            shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
            hint = f"the store has: {shown} (forklift images lists them)"
        else:
            hint = "the store is empty: build, pull, load or bootstrap an image first"
    raise ImageError(f"no such image: {text}", hint=hint)


def image_lowers(store: Store, snapshots: SnapshotCache, img: StoreImage) -> list[Path]:
    """The unpacked snapshot of each of the image's layers, top-most first (overlayfs' lowerdir
    order); a layer not unpacked yet is unpacked once into the shared snapshot cache."""
    dirs: list[Path] = []
    for desc, diff_id in zip(image_layers(img), image_config(img).diff_ids, strict=True):

        def fill(target: Path, digest: Digest = desc.digest, size: int = desc.size) -> None:
            from forklift.snapshot.unpack import unpack_layer_for_overlay  # only when unpacking

            with store.open_blob(digest, size=size) as blob:
                unpack_layer_for_overlay(blob, target)

        dirs.append(snapshots.ensure(str(diff_id), fill))
    return list(reversed(dirs))


# ---- finding the runtime -------------------------------------------------------------------------------


# ---- signals -------------------------------------------------------------------------------------------


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (SigCgt in /proc/<pid>/status)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True  # cannot tell: give it the grace period
    for line in text.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return True


class SignalForwarder:
    """While active, signals to forklift go to the container in ``state_dir`` (see the module doc)."""

    def __init__(self, runtime: OciRuntime, stop_timeout: float) -> None:
        self.runtime = runtime
        self.stop_timeout = stop_timeout
        self._received = 0
        self._lock = threading.Lock()
        self._done = threading.Event()

    def _runc(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        argv = [str(self.runtime.binary), "--root", str(self.runtime.state_dir), *args]
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False)

    def _containers(self) -> list[str]:
        try:
            return [p.name for p in self.runtime.state_dir.iterdir() if p.is_dir()]
        except OSError:
            return []

    def _init_pid(self, container_id: str) -> int | None:
        done = self._runc("state", container_id)
        try:
            pid = json.loads(done.stdout)["pid"]
        except (ValueError, KeyError, TypeError):
            return None
        return pid if isinstance(pid, int) and pid > 0 else None

    def _stop(self, signum: int, first: bool) -> None:
        for container_id in self._containers():
            pid = self._init_pid(container_id)
            if not first or pid is None or not _catches(pid, signum):
                self._runc("kill", container_id, "KILL")
                continue
            self._runc("kill", container_id, str(signum))
            if not self._done.wait(self.stop_timeout):
                self._runc("kill", container_id, "KILL")

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        with self._lock:
            self._received += 1
            first = self._received == 1
        # The work (runtime calls, a grace period) happens off the signal handler.
        threading.Thread(target=self._stop, args=(signum, first), daemon=True).start()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Install the handlers (main thread only; elsewhere this is a no-op) and restore them after."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in FORWARDED_SIGNALS}
        try:
            yield
        finally:
            self._done.set()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


# ---- running -------------------------------------------------------------------------------------------


SCRATCH_PREFIX = ".container-"


@contextlib.contextmanager
def container_scratch(snapshots: SnapshotCache) -> Iterator[Path]:
    """A fresh scratch dir (for upper, work and the rootfs mount) on the snapshots' filesystem.

    The dir is ``flock``ed for as long as the run lasts (made under another name and renamed
    once locked, so no other run ever sees it unlocked); ``remove_stale_scratch`` uses that to
    tell a live run's dir from one left by a forklift that was killed. Removed afterwards,
    unless its rootfs is somehow still mounted (deleting through a mount is never right).
    """
    token = uuid.uuid4().hex[:16]
    making = snapshots.root / f".making{SCRATCH_PREFIX}{token}"
    making.mkdir()
    fd = os.open(making, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        scratch = snapshots.root / f"{SCRATCH_PREFIX}{token}"
        os.rename(making, scratch)
        try:
            yield scratch
        finally:
            if not os.path.ismount(scratch / "rootfs"):
                shutil.rmtree(scratch, ignore_errors=True)
    finally:
        os.close(fd)


def _live_rootfses(runtime: OciRuntime) -> set[str]:
    """The rootfs of every container another ``forklift run`` still has (whose forklift may be gone)."""
    live: set[str] = set()
    try:
        state_dirs = [d for d in RUN_STATE_ROOT.iterdir() if d.is_dir()]
    except OSError:
        return live
    for state_dir in state_dirs:
        for container in (c for c in state_dir.iterdir() if c.is_dir()):
            done = subprocess.run(
                [str(runtime.binary), "--root", str(state_dir), "state", container.name],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=False,
            )
            with contextlib.suppress(ValueError, TypeError, KeyError):
                doc = json.loads(done.stdout)
                if doc.get("status") != "stopped":
                    live.add(os.path.realpath(doc["rootfs"]))
    return live


def remove_stale_scratch(snapshots: SnapshotCache, runtime: OciRuntime) -> list[Path]:
    """Remove the scratch dirs of runs whose forklift was killed (unlocked), unless a container
    still runs on one; returns what was removed. A leftover overlay mount is detached first."""
    stale = []
    for path in snapshots.root.glob(f"{SCRATCH_PREFIX}*"):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # a live run holds it
            continue
        stale.append((path, fd))
    removed = []
    live = _live_rootfses(runtime) if stale else set()
    for path, fd in stale:
        try:
            rootfs = path / "rootfs"
            if os.path.realpath(rootfs) in live:
                continue
            if os.path.ismount(rootfs):
                # Rare (a killed run): the util-linux command rather than another mount(2) binding.
                subprocess.run(["umount", "--lazy", str(rootfs)], capture_output=True, check=False)
            if not os.path.ismount(rootfs):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        finally:
            os.close(fd)
    return removed


def _rootfs(lowers: Sequence[Path], scratch: Path, stack: contextlib.ExitStack) -> Path:
    """The container's writable rootfs: overlayfs, else (where it cannot mount) the copy fallback."""
    from forklift.snapshot.overlay import OverlayError, writable_rootfs

    upper, work, merged = (scratch / n for n in ("upper", "work", "rootfs"))
    try:
        # volatile: nothing the container writes is kept, so unmounting need not sync the upper
        # dir's whole filesystem (a plain unmount syncs it: a quarter second on a busy disk).
        mount = writable_rootfs(lowers, upper, work, merged, use_overlay=True, volatile=True)
        return stack.enter_context(mount)
    except OverlayError:
        return stack.enter_context(writable_rootfs(lowers, upper, work, merged, use_overlay=False))


def run_container(
    root: Path,
    image: str,
    options: ContainerOptions,
    *,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
) -> int:
    """Run ``image`` from the store at ``root`` as ``options`` say; return the process's exit status.

    ``stdin``/``stdout``/``stderr`` are file descriptors (``None``: this process's own). Without
    ``options.interactive`` the container's stdin is /dev/null. Everything the container wrote is
    removed afterwards; the image and its snapshots are never changed.
    """
    from forklift.runtime.container import container_process

    store = Store(root)
    img = find_image(store, image, platform=options.platform)
    config = image_config(img).config
    snapshots = SnapshotCache(store.root)
    lowers = image_lowers(store, snapshots, img)
    state_dir = RUN_STATE_ROOT / uuid.uuid4().hex[:12]
    runtime = probed_runtime(store.root, options.runtime_name, state_dir)
    remove_stale_scratch(snapshots, runtime)
    devnull: int | None = None
    try:
        with contextlib.ExitStack() as stack:
            scratch = stack.enter_context(container_scratch(snapshots))
            rootfs = _rootfs(lowers, scratch, stack)
            process = container_process(
                config,
                rootfs,
                command=options.command,
                entrypoint=options.entrypoint,
                env=options.env,
                user=options.user,
                workdir=options.workdir,
                network=options.network,
                terminal=options.terminal,
                hostname=options.hostname,
            )
            if not options.interactive:
                devnull = os.open(os.devnull, os.O_RDONLY)
                stdin = devnull
            with SignalForwarder(runtime, options.stop_timeout).active():
                return runtime.run_attached(
                    process, rootfs, options.mounts, stdin=stdin, stdout=stdout, stderr=stderr
                )
    except OSError as err:
        raise ForkliftError(f"cannot run {image}: {err}") from err
    finally:
        if devnull is not None:
            os.close(devnull)
        with contextlib.suppress(OSError):
            state_dir.rmdir()
