"""The one seam between forklift and a process runner."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import field
from pathlib import Path
from typing import Literal, Protocol

from forklift.records import record

NetworkMode = Literal["host", "none", "default"]


@record
class Mount:
    """A mount in the container: ``type`` is bind, tmpfs, proc, ...; ``source`` a host path for bind."""

    target: str
    type: str = "bind"
    source: str | None = None
    options: tuple[str, ...] = ()  # e.g. ("rbind", "ro")


@record
class DeviceNode:
    """A device node the runtime creates in the container and lets it use (the device cgroup).

    ``type`` is ``c`` (character), ``b`` (block) or ``p`` (a fifo: no cgroup rule); ``permissions``
    is the cgroup access (``rwm``); ``file_mode``, ``uid`` and ``gid`` default to the runtime's.
    """

    path: str
    type: str
    major: int
    minor: int
    permissions: str = "rwm"
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None


@record
class Hook:
    """An OCI lifecycle hook: ``stage`` is createRuntime, createContainer, startContainer,
    prestart, poststart or poststop; ``path`` runs on the host with ``args`` and ``env``."""

    stage: str
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = None


@record
class Process:
    """What to run: argv, environment, working directory, user and network."""

    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    network: NetworkMode = "host"
    terminal: bool = False
    hostname: str = "forklift"
    extra_hosts: Mapping[str, str] = field(default_factory=dict)
    # ``RUN --security=insecure``: every capability this process holds, no masked or read-only
    # paths, writable /sys, all devices allowed (a privileged container).
    privileged: bool = False
    # ``RUN --device``: CDI device nodes and hooks (their env and mounts are in ``env``/mounts).
    devices: tuple[DeviceNode, ...] = ()
    hooks: tuple[Hook, ...] = ()


OutputSink = Callable[[bytes], None]


class Runtime(Protocol):
    """Runs a process in a root filesystem and returns its exit status."""

    def run(
        self,
        process: Process,
        rootfs: Path,
        mounts: tuple[Mount, ...] = (),
        *,
        output: OutputSink | None = None,
    ) -> int:
        """Run ``process`` with ``rootfs`` as ``/`` plus ``mounts``; stream stdout+stderr to ``output``."""
        ...
