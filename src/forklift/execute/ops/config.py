"""Metadata steps (ENV, LABEL, CMD, ...): pure edits of the run config, and history text as docker shows it.

No step here touches the filesystem except WORKDIR, whose directory creation lives in ops/copy.py
(it writes a layer only when the directory is missing). History ``created_by`` strings follow
BuildKit's Dockerfile frontend, so ``docker history`` of a forklift image reads like BuildKit's:
``RUN |2 A=1 B=2 /bin/sh -c make # buildkit``, ``COPY src /dst # buildkit``, ``ENV A=b``,
``EXPOSE map[80/tcp:{}]``, ``CMD ["a" "b"]``.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import replace

from forklift.oci.model import ContainerConfig, HealthConfig

HISTORY_COMMENT = "buildkit.dockerfile.v0"
DEFAULT_SHELL: tuple[str, ...] = ("/bin/sh", "-c")


def go_quoted_list(items: Iterable[str]) -> str:
    """Go's ``fmt.Sprintf("%q", []string{...})``: ``["a" "b"]``."""
    return "[" + " ".join(json.dumps(i, ensure_ascii=False) for i in items) + "]"


def go_list(items: Iterable[str]) -> str:
    """Go's ``fmt.Sprint([]string{...})``: ``[a b]``."""
    return "[" + " ".join(items) + "]"


def shell_of(config: ContainerConfig) -> tuple[str, ...]:
    """The SHELL in effect (``/bin/sh -c`` unless SHELL set one)."""
    return config.shell if config.shell else DEFAULT_SHELL


def command_args(config: ContainerConfig, words: Sequence[str], *, shell_form: bool) -> tuple[str, ...]:
    """argv for RUN/CMD/ENTRYPOINT: exec form as is; shell form as SHELL + the one command line."""
    if shell_form:
        return (*shell_of(config), " ".join(words))
    return tuple(words)


def set_env(config: ContainerConfig, pairs: Sequence[tuple[str, str]]) -> ContainerConfig:
    """ENV k=v ...: later pairs win; a key keeps its place when redefined."""
    for key, value in pairs:
        config = config.with_env(key, value)
    return config


def env_history(pairs: Sequence[tuple[str, str]]) -> str:
    """``ENV A=b C=d``."""
    return "ENV " + " ".join(f"{k}={v}" for k, v in pairs)


def set_labels(config: ContainerConfig, pairs: Sequence[tuple[str, str]]) -> ContainerConfig:
    """LABEL k=v ...: merged over inherited labels."""
    labels = dict(config.labels)
    labels.update(pairs)
    return replace(config, labels=labels)


def label_history(pairs: Sequence[tuple[str, str]]) -> str:
    """``LABEL a=b c=d``."""
    return "LABEL " + " ".join(f"{k}={v}" for k, v in pairs)


def normalise_port(port: str) -> str:
    """``80`` -> ``80/tcp``; the protocol is lower-cased."""
    number, _, proto = port.partition("/")
    return f"{number}/{(proto or 'tcp').lower()}"


def add_ports(config: ContainerConfig, ports: Sequence[str]) -> ContainerConfig:
    """EXPOSE: adds ports (a set, kept sorted)."""
    merged = set(config.exposed_ports) | {normalise_port(p) for p in ports}
    return replace(config, exposed_ports=tuple(sorted(merged)))


def expose_history(ports: Sequence[str]) -> str:
    """``EXPOSE map[443/tcp:{} 80/tcp:{}]`` (Go prints a map with sorted keys)."""
    return "EXPOSE map[" + " ".join(f"{p}:{{}}" for p in sorted({normalise_port(p) for p in ports})) + "]"


def add_volumes(config: ContainerConfig, paths: Sequence[str]) -> ContainerConfig:
    """VOLUME: adds mount points (a set, kept sorted)."""
    return replace(config, volumes=tuple(sorted(set(config.volumes) | set(paths))))


def volume_history(paths: Sequence[str]) -> str:
    """``VOLUME [/data /logs]``."""
    return "VOLUME " + go_list(paths)


def set_user(config: ContainerConfig, user: str) -> ContainerConfig:
    """USER name[:group]."""
    return replace(config, user=user)


def resolve_workdir(config: ContainerConfig, path: str) -> str:
    """WORKDIR: a relative path builds on the current one; the result is clean and absolute."""
    base = config.working_dir or "/"
    joined = posixpath.join(base, path)
    clean = posixpath.normpath(joined)
    return "/" + clean.lstrip("/") if clean != "/" else "/"


def set_workdir(config: ContainerConfig, path: str) -> ContainerConfig:
    """WORKDIR (the directory itself is created by the WORKDIR step when missing)."""
    return replace(config, working_dir=resolve_workdir(config, path))


def set_cmd(config: ContainerConfig, words: Sequence[str], *, shell_form: bool) -> ContainerConfig:
    """CMD: exec form, or shell form wrapped in the SHELL."""
    return replace(config, cmd=command_args(config, words, shell_form=shell_form))


def set_entrypoint(
    config: ContainerConfig, words: Sequence[str], *, shell_form: bool, cmd_set_in_stage: bool
) -> ContainerConfig:
    """ENTRYPOINT; an inherited CMD is reset (a CMD given earlier in the same stage stays)."""
    entry = command_args(config, words, shell_form=shell_form)
    cmd = config.cmd if cmd_set_in_stage else None
    return replace(config, entrypoint=entry, cmd=cmd)


def command_history(keyword: str, args: Sequence[str]) -> str:
    """``CMD ["a" "b"]`` / ``ENTRYPOINT ["x"]``."""
    return f"{keyword} {go_quoted_list(args)}"


def set_shell(config: ContainerConfig, words: Sequence[str]) -> ContainerConfig:
    """SHELL ["executable", "params"]."""
    return replace(config, shell=tuple(words))


def set_stop_signal(config: ContainerConfig, signal: str) -> ContainerConfig:
    """STOPSIGNAL."""
    return replace(config, stop_signal=signal)


def set_healthcheck(config: ContainerConfig, health: HealthConfig) -> ContainerConfig:
    """HEALTHCHECK [options] CMD ... / HEALTHCHECK NONE."""
    return replace(config, healthcheck=health)


def _go_duration(ns: int) -> str:
    if ns == 0:
        return "0s"
    seconds = ns / 1e9
    if seconds >= 3600 and ns % 3_600_000_000_000 == 0:
        return f"{ns // 3_600_000_000_000}h0m0s"
    if seconds >= 60 and ns % 60_000_000_000 == 0:
        return f"{ns // 60_000_000_000}m0s"
    return f"{seconds:g}s"


def healthcheck_history(health: HealthConfig) -> str:
    """Go's ``%v`` of the health config pointer, as BuildKit records it."""
    durations = " ".join(
        f'"{_go_duration(v)}"'
        for v in (health.interval, health.timeout, health.start_period, health.start_interval)
    )
    return f"HEALTHCHECK &{{{go_quoted_list(health.test)} {durations} '\\x{health.retries:02x}'}}"


def add_onbuild(config: ContainerConfig, trigger: str) -> ContainerConfig:
    """ONBUILD <instruction>: stored in the config for stages built FROM this image."""
    return replace(config, on_build=(*config.on_build, trigger))


def arg_history(declared: Sequence[tuple[str, str | None]]) -> str:
    """``ARG A=1 B`` (a name without a default is shown bare)."""
    return "ARG " + " ".join(k if v is None else f"{k}={v}" for k, v in declared)


def run_history(args: Sequence[str], build_args: Sequence[tuple[str, str]]) -> str:
    """``RUN |2 A=1 B=2 /bin/sh -c make # buildkit``: the stage's ARGs prefix the command."""
    text = " ".join(args)
    if build_args:
        text = f"|{len(build_args)} " + " ".join(f"{k}={v}" for k, v in build_args) + " " + text
    return f"RUN {text} # buildkit"


def copy_history(keyword: str, sources: Sequence[str], dest: str) -> str:
    """``COPY a b /dst/ # buildkit`` (ADD alike)."""
    return f"{keyword} {' '.join(sources)} {dest} # buildkit"
