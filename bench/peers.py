"""The builders the build benchmark times: forklift (through its CLI) and BuildKit (dockerd 20.10).

Each builder turns (Dockerfile, context, options) into one command line; ``timed_run`` runs it and
measures wall time and the CPU time of the whole process tree, so Python start-up and any helper
processes count. The peer is the one ../shared/peers/run-buildkit.sh starts: Debian's dockerd with
its embedded BuildKit on overlay2, socket /tmp/anchors/run/docker.sock, driven by /usr/bin/docker
(the 20.10 CLI; /usr/local/bin/docker has no buildx and refuses DOCKER_BUILDKIT=1).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DOCKER = "/usr/bin/docker"
DEFAULT_DOCKER_HOST = "unix:///tmp/anchors/run/docker.sock"


@dataclass(frozen=True)
class Timing:
    """One timed command: wall-clock seconds and CPU seconds (user + system, children included)."""

    wall: float
    cpu: float


@dataclass(frozen=True)
class Builder:
    """How to invoke one image builder on a Dockerfile and a context."""

    name: str
    argv_prefix: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    def argv(self, dockerfile: Path, context: Path, *extra: str) -> list[str]:
        """The full command line for one quiet build of ``dockerfile`` in ``context``."""
        return [*self.argv_prefix, *extra, "-f", str(dockerfile), str(context)]


class BuildFailed(RuntimeError):
    """A benchmarked build exited non-zero (the message carries the tail of its output)."""


def timed_run(argv: list[str], env: dict[str, str]) -> Timing:
    """Run ``argv`` to completion; wall time and the CPU time of its process tree."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )
    # wait4 gives the rusage of this child and its reaped descendants, without other tools' noise
    # (other helpers share this 2-core machine; wall time alone is noisy).
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-15:]
        raise BuildFailed(f"{' '.join(argv)} exited {proc.returncode}:\n" + "\n".join(tail))
    return Timing(wall=wall, cpu=usage.ru_utime + usage.ru_stime)


def forklift_builder(executable: Path, root: Path, base_reg: str) -> Builder:
    """forklift through its console script (start-up included), on store ``root``."""
    prefix = (str(executable), "--root", str(root), "build", "-q", "--build-arg", f"BASE_REG={base_reg}")
    # As a user runs it: with byte-code caching (an empty value turns PYTHONDONTWRITEBYTECODE off;
    # with it on, every module edited since its .pyc was written is compiled again on each run).
    return Builder("forklift", prefix, env={"PYTHONDONTWRITEBYTECODE": ""})


def buildkit_builder(docker_host: str, base_reg: str) -> Builder:
    """BuildKit through /usr/bin/docker (20.10) talking to the peers' dockerd."""
    prefix = (DOCKER, "build", "-q", "--network=host", "--build-arg", f"BASE_REG={base_reg}")
    return Builder("buildkit", prefix, env={"DOCKER_HOST": docker_host, "DOCKER_BUILDKIT": "1"})


def buildkit_available(docker_host: str, images: tuple[str, ...]) -> str | None:
    """None when the peer dockerd answers and holds ``images``; otherwise why it cannot be used."""
    if not Path(DOCKER).exists():
        return f"{DOCKER} is not installed (apt-get install docker.io)"
    env = {**os.environ, "DOCKER_HOST": docker_host}
    try:
        info = subprocess.run(
            [DOCKER, "info", "--format", "{{.Driver}}"], env=env, capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return f"dockerd at {docker_host} does not answer"
    if info.returncode != 0:
        return f"no dockerd at {docker_host} (../shared/peers/run-buildkit.sh start)"
    for image in images:
        probe = subprocess.run([DOCKER, "image", "inspect", image], env=env, capture_output=True, timeout=20)
        if probe.returncode != 0:
            return f"dockerd at {docker_host} lacks {image} (run-buildkit.sh start loads it)"
    return None


def buildkit_version(docker_host: str) -> str:
    """dockerd's version and storage driver, for the record."""
    env = {**os.environ, "DOCKER_HOST": docker_host}
    out = subprocess.run(
        [DOCKER, "info", "--format", "dockerd {{.ServerVersion}} storage={{.Driver}}"],
        env=env,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()
