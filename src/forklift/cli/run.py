"""``forklift run IMAGE [CMD...]``: run a command in a new container from a stored image.

docker run's everyday flags, with the same meanings. There is no container state to keep: the
container's writes go to a scratch directory that is removed when it exits, so every run is
``--rm`` (the flag is accepted for scripts written for docker). The container shares the host's
network by default, so ``-p`` is accepted but publishes nothing (a note says so); with
``--network none`` it has only loopback and ``-p`` is an error. forklift exits with the
container's exit status.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import click

from forklift.errors import ForkliftError


def _env_file(path: Path) -> list[tuple[str, str]]:
    """docker's --env-file: ``K=V`` lines (``K`` alone takes the host's value); blank and # lines skipped."""
    from forklift.runtime.container import parse_env_option

    try:
        text = path.read_text()
    except OSError as err:
        raise ForkliftError(f"cannot read the env file {path}: {err.strerror}") from err
    out = []
    for line in text.splitlines():
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        parsed = parse_env_option(line)
        if parsed is not None:
            out.append(parsed)
    return out


def _published_port_note(publish: Sequence[str], network: str) -> str | None:
    """What to say about ``-p``: None when not given; raises with ``--network none``."""
    if not publish:
        return None
    shown = " ".join(f"-p {p}" for p in publish)
    if network == "none":
        raise ForkliftError(
            f"cannot publish ports ({shown}) with --network none: the container has only loopback",
            hint="drop -p, or use --network host (the default): the container's ports are the host's",
        )
    container_ports = sorted({p.rsplit(":", 1)[-1].split("/")[0] for p in publish})
    return (
        f"note: {shown} publishes nothing: the container uses the host's network, so it listens "
        f"on the host's port {', '.join(container_ports)} directly"
    )


def _real_fd(stream: IO[Any] | None) -> int | None:
    """The OS file descriptor behind ``stream``, or None when it has none (a test runner's buffer)."""
    if stream is None:
        return None
    try:
        return stream.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return None


class _Relay:
    """Pipes standing in for Python streams without file descriptors, copied by threads."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.parent_ends: list[int] = []  # our copies of the ends the container writes or reads

    def output(self, stream: IO[Any]) -> int:
        read_fd, write_fd = os.pipe()
        sink = getattr(stream, "buffer", None)

        def copy() -> None:
            with os.fdopen(read_fd, "rb", buffering=0) as pipe:
                while chunk := pipe.read(65536):
                    if sink is not None:
                        sink.write(chunk)
                        sink.flush()
                    else:
                        stream.write(chunk.decode(errors="replace"))
                        stream.flush()

        self._start(copy)
        self.parent_ends.append(write_fd)
        return write_fd

    def input(self, stream: IO[Any]) -> int:
        read_fd, write_fd = os.pipe()
        source = getattr(stream, "buffer", stream)

        def copy() -> None:
            with contextlib.suppress(OSError), os.fdopen(write_fd, "wb", buffering=0) as pipe:
                while chunk := source.read(65536):
                    pipe.write(chunk if isinstance(chunk, bytes) else chunk.encode())

        self._start(copy)
        self.parent_ends.append(read_fd)
        return read_fd

    def _start(self, target: Any) -> None:
        thread = threading.Thread(target=target, name="forklift-run-relay", daemon=True)
        thread.start()
        self.threads.append(thread)

    def close(self) -> None:
        """Close our pipe ends (the container has exited) and let the copies finish."""
        for fd in self.parent_ends:
            with contextlib.suppress(OSError):
                os.close(fd)
        for thread in self.threads:
            thread.join(timeout=5)


@contextlib.contextmanager
def _attached_fds() -> Iterator[tuple[int, int, int]]:
    """File descriptors for the container's stdin, stdout and stderr: this process's own, or pipes
    relayed to ``sys.std*`` when those are not real files (click's test runner, embedding)."""
    relay = _Relay()
    fds: list[int] = []
    try:
        for stream, is_input in ((sys.stdin, True), (sys.stdout, False), (sys.stderr, False)):
            fd = _real_fd(stream)
            if fd is None:
                fd = relay.input(stream) if is_input else relay.output(stream)
            elif not is_input:
                stream.flush()  # what Python printed comes before the container's output
            fds.append(fd)
        yield fds[0], fds[1], fds[2]
    finally:
        relay.close()


@click.command("run", context_settings={"allow_interspersed_args": False})
@click.option("--rm", "remove", is_flag=True, help="Accepted for docker compatibility: every run is --rm.")
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin attached (otherwise it is /dev/null).")
@click.option("-t", "--tty", is_flag=True, help="Give the container a pseudo-terminal.")
@click.option(
    "-e", "--env", "env", multiple=True, metavar="K=V", help="Set a variable (K alone: the host's)."
)
@click.option(
    "--env-file",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read variables from a file of K=V lines.",
)
@click.option("-v", "--volume", multiple=True, metavar="SRC:DST[:ro]", help="Bind-mount a host path.")
@click.option("-w", "--workdir", default=None, metavar="DIR", help="Working directory (default WORKDIR).")
@click.option("-u", "--user", default=None, metavar="USER[:GROUP]", help="User to run as (default USER).")
@click.option("--entrypoint", default=None, help='Replace the ENTRYPOINT (and drop CMD); "" clears it.')
@click.option(
    "-p",
    "--publish",
    multiple=True,
    metavar="[HOST:]PORT",
    help="Accepted for docker compatibility; the host's network needs no publishing.",
)
@click.option(
    "--network",
    type=click.Choice(["host", "none"]),
    default="host",
    show_default=True,
    help="host: the host's network; none: loopback only.",
)
@click.option("--name", default=None, help="A name for the container; also its hostname.")
@click.option("--hostname", default=None, help="The container's hostname (default: --name, else forklift).")
@click.option("--runtime", default=None, metavar="NAME", help="OCI runtime to use (runc, crun or a path).")
@click.option(
    "--platform", default=None, help="For a multi-platform image: which one (default: this machine)."
)
@click.option(
    "--stop-timeout",
    type=click.FloatRange(0),
    default=10.0,
    show_default=True,
    help="Seconds a container that handles SIGTERM gets to exit when forklift is stopped.",
)
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
@click.pass_context
def run_command(
    ctx: click.Context,
    obj: Any,
    remove: bool,
    interactive: bool,
    tty: bool,
    env: tuple[str, ...],
    env_file: tuple[Path, ...],
    volume: tuple[str, ...],
    workdir: str | None,
    user: str | None,
    entrypoint: str | None,
    publish: tuple[str, ...],
    network: str,
    name: str | None,
    hostname: str | None,
    runtime: str | None,
    platform: str | None,
    stop_timeout: float,
    image: str,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND (default: the image's ENTRYPOINT and CMD) in a new container from IMAGE.

    The container sees the image's files through an overlay; what it writes is thrown away when
    it exits (every run is --rm). forklift exits with the container's exit status.
    """
    from forklift.execute.container import ContainerOptions, run_container
    from forklift.oci.model import Platform
    from forklift.runtime.container import parse_env_option, parse_volume_option

    del remove  # always the behaviour: there is no container state to keep
    note = _published_port_note(publish, network)
    if note is not None:
        click.echo(note, err=True)
    if workdir is not None and not workdir.startswith("/"):
        raise ForkliftError(f"the working directory {workdir!r} is not absolute", hint="use e.g. -w /app")
    variables: list[tuple[str, str]] = []
    for path in env_file:
        variables.extend(_env_file(path))
    for option in env:
        parsed = parse_env_option(option)
        if parsed is not None:
            variables.append(parsed)
    options = ContainerOptions(
        command=command,
        entrypoint=None if entrypoint is None else ((entrypoint,) if entrypoint else ()),
        env=tuple(variables),
        user=user,
        workdir=workdir,
        mounts=tuple(parse_volume_option(v) for v in volume),
        network="none" if network == "none" else "host",
        terminal=tty,
        interactive=interactive,
        hostname=hostname or name or "forklift",
        runtime_name=runtime,
        platform=Platform.parse(platform) if platform else None,
        stop_timeout=stop_timeout,
    )
    with _attached_fds() as (stdin, stdout, stderr):
        status = run_container(obj.root, image, options, stdin=stdin, stdout=stdout, stderr=stderr)
    ctx.exit(status)
