"""What ``forklift run`` starts: an image's config turned into a ``Process``, docker-run style.

ENTRYPOINT and CMD combine as ``docker run`` combines them (a command on the command line
replaces CMD; ``--entrypoint`` replaces ENTRYPOINT and drops the image's CMD); the image's ENV
plus ``-e`` settings, HOSTNAME, HOME (from the image's /etc/passwd when unset) and TERM for a
terminal; USER resolved in the image; WORKDIR. ``-v SRC:DST[:ro]`` becomes a bind ``Mount``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from forklift.errors import ForkliftError
from forklift.oci.model import ContainerConfig
from forklift.runtime.base import Mount, NetworkMode, Process
from forklift.runtime.users import resolve_user, user_home


def container_args(
    config: ContainerConfig,
    command: Sequence[str] = (),
    *,
    entrypoint: Sequence[str] | None = None,
) -> tuple[str, ...]:
    """The argv a container of this image runs, given ``docker run`` overrides.

    ``entrypoint`` (``--entrypoint``; ``[]`` clears it) replaces the image's and drops its CMD.
    Raises ``ForkliftError`` when there is nothing to run.
    """
    if entrypoint is not None:
        args = (*entrypoint, *command)
    else:
        cmd = tuple(command) if command else (config.cmd or ())
        args = (*(config.entrypoint or ()), *cmd)
    if not args:
        raise ForkliftError(
            "no command specified: the image has no ENTRYPOINT or CMD",
            hint="give a command after the image name, e.g. forklift run IMAGE sh",
        )
    return args


def parse_env_option(option: str, host_env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """``-e K=V`` -> (K, V); ``-e K`` takes K from ``host_env`` (None when it is unset there)."""
    key, sep, value = option.partition("=")
    if not key:
        raise ForkliftError(f"invalid environment variable {option!r}: the name is empty")
    if sep:
        return key, value
    environ = os.environ if host_env is None else host_env
    return (key, environ[key]) if key in environ else None


def parse_volume_option(option: str) -> Mount:
    """``-v SRC:DST[:ro|rw]`` -> a bind ``Mount`` (SRC must be an existing absolute host path)."""
    parts = option.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ForkliftError(f"invalid volume {option!r}", hint="use -v /host/path:/container/path[:ro]")
    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise ForkliftError(f"invalid volume mode {mode!r} in {option!r}", hint="the mode is ro or rw")
    if not source.startswith("/"):
        raise ForkliftError(
            f"invalid volume {option!r}: {source!r} is not an absolute host path",
            hint="named volumes are not supported; give an absolute path such as $PWD/data",
        )
    if not os.path.exists(source):
        raise ForkliftError(f"volume source {source} does not exist")
    if not target.startswith("/"):
        raise ForkliftError(f"invalid volume {option!r}: the container path must be absolute")
    options = ("rbind", "ro") if mode == "ro" else ("rbind",)
    return Mount(target=target, type="bind", source=source, options=options)


def container_process(
    config: ContainerConfig,
    rootfs: Path,
    *,
    command: Sequence[str] = (),
    entrypoint: Sequence[str] | None = None,
    env: Sequence[tuple[str, str]] = (),
    user: str | None = None,
    workdir: str | None = None,
    network: NetworkMode = "host",
    terminal: bool = False,
    hostname: str = "forklift",
) -> Process:
    """The ``Process`` for running the image whose config is ``config`` and whose rootfs is ``rootfs``.

    ``env`` entries override the image's ENV; ``user``/``workdir`` override USER/WORKDIR.
    """
    uid, gid, groups = resolve_user(rootfs, config.user if user is None else user)
    merged: dict[str, str] = {"HOSTNAME": hostname}
    merged.update(config.env_map())
    merged.update(dict(env))
    if "HOME" not in merged:
        merged["HOME"] = user_home(rootfs, uid)
    if terminal and "TERM" not in merged:
        merged["TERM"] = "xterm"
    return Process(
        args=container_args(config, command, entrypoint=entrypoint),
        env=tuple(merged.items()),
        cwd=(workdir if workdir is not None else config.working_dir) or "/",
        uid=uid,
        gid=gid,
        additional_gids=groups,
        network=network,
        terminal=terminal,
        hostname=hostname,
    )
