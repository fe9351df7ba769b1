"""``forklift build`` with registries and a shared cache, through the real command line.

``--cache-to``/``--cache-from`` (a CI directory and the real docker-registry): a fresh store holding
only the busybox base rebuilds a multi-stage build with every step CACHED and the same image ID.
``--output type=registry,name=REF`` pushes (checked with skopeo); ``--pull`` fetches a newer base
the store already has under that name; ``--insecure-registry`` reaches a plain-HTTP registry at a
non-loopback address (through a TCP forwarder, since the test registry listens on 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from registry_fixtures import RegistryServer

from support import require_tool

pytestmark = pytest.mark.e2e

DOCKERFILE = """\
FROM busybox AS builder
COPY a.txt /src/a.txt
RUN cat /src/a.txt > /out.txt && echo built >> /out.txt

FROM busybox
COPY --from=builder /out.txt /app/out.txt
RUN cat /app/out.txt > /app/copy.txt
CMD ["cat", "/app/copy.txt"]
"""
STEPS = 6  # two FROMs, two COPYs, two RUNs


@pytest.fixture(autouse=True)
def _runtime() -> None:
    require_tool("runc")


def forklift(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``forklift --root STORE ARGS`` as a user runs it (a new process, exit status, stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "forklift.cli.main", "--root", str(store), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def build_ok(store: Path, context: Path, *args: str) -> tuple[str, str]:
    """Build with plain progress; return (image ID, progress). Fails the test on a non-zero exit."""
    iid = context.parent / f"iid-{store.name}"
    done = forklift(store, "build", "--progress", "plain", "--iidfile", str(iid), *args, str(context))
    assert done.returncode == 0, done.stderr
    return iid.read_text(), done.stderr


def step_results(progress: str) -> dict[str, bool]:
    """Each step title of the plain progress (``[stage i/n] ...``) -> whether it was CACHED."""
    titles: dict[str, str] = {}
    cached: set[str] = set()
    for line in progress.splitlines():
        num, _, rest = line.partition(" ")
        if rest.startswith("[") and num not in titles:
            titles[num] = rest
        elif rest == "CACHED":
            cached.add(num)
    return {title: num in cached for num, title in titles.items()}


def config_of(store: Path, image_id: str) -> dict[str, object]:
    algo, hexpart = image_id.split(":")
    doc: dict[str, object] = json.loads((store / "blobs" / algo / hexpart).read_text())
    return doc


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("A\n")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    return ctx


def test_cache_to_and_from_a_local_directory(
    context: Path, tmp_path: Path, busybox_image: Callable[[Path], str]
) -> None:
    first_store = tmp_path / "store-a"
    busybox_image(first_store)
    cache_dir = tmp_path / "ci-cache"
    first_id, progress = build_ok(first_store, context, "--cache-to", f"type=local,dest={cache_dir},mode=max")
    assert len(step_results(progress)) == STEPS
    assert "exporting cache to" in progress
    index = json.loads((cache_dir / "index.json").read_text())
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == ["cache"]

    fresh = tmp_path / "store-b"
    busybox_image(fresh)
    missing = tmp_path / "no-cache-here"
    second_id, progress = build_ok(
        fresh,
        context,
        "--cache-from",
        f"type=local,src={missing}",
        "--cache-from",
        f"type=local,src={cache_dir}",
    )
    steps = step_results(progress)
    assert len(steps) == STEPS and all(steps.values()), progress
    assert "cache miss" not in progress
    assert f"WARNING: no cache at {missing}" in progress  # as BuildKit: a missing cache only warns
    assert second_id == first_id

    # A failed export fails the build (exit 1, no traceback) unless ignore-error=true says warn.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    failed = forklift(
        first_store, "build", "--progress", "plain", "--cache-to", f"type=local,dest={blocker}", str(context)
    )
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "--cache-to" in failed.stderr and "not a directory" in failed.stderr
    warned_id, progress = build_ok(
        first_store, context, "--cache-to", f"type=local,dest={blocker},ignore-error=true"
    )
    assert warned_id == first_id and "WARNING: cache export" in progress


def test_registry_cache_and_push_through_the_command_line(
    context: Path, tmp_path: Path, busybox_image: Callable[[Path], str], plain_registry: RegistryServer
) -> None:
    skopeo = require_tool("skopeo")
    cache_ref = f"{plain_registry.host}/cli/app:buildcache"
    image_ref = f"{plain_registry.host}/cli/app:1"
    first_store = tmp_path / "store-a"
    busybox_image(first_store)
    docker_ref = f"{plain_registry.host}/cli/app:docker"
    zstd_ref = f"{plain_registry.host}/cli/app:zstd"
    first_id, progress = build_ok(
        first_store,
        context,
        "--cache-to",
        f"type=registry,ref={cache_ref},mode=max",
        "--output",
        f"type=registry,name={image_ref}",
        "--output",
        f"type=registry,name={docker_ref},oci-mediatypes=false",
        "--output",
        f"type=image,name={zstd_ref},push=true,compression=zstd",
    )

    for ref in (image_ref, docker_ref, zstd_ref):
        assert f"pushing {ref}" in progress
    assert f"exporting cache to {cache_ref}" in progress

    def raw_manifest(ref: str) -> dict[str, object]:
        inspected = subprocess.run(
            [skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        doc: dict[str, object] = json.loads(inspected)
        return doc

    manifest = raw_manifest(image_ref)
    assert manifest["config"]["digest"] == first_id  # type: ignore[index]
    assert all(layer["mediaType"].endswith("+gzip") for layer in manifest["layers"])  # type: ignore[attr-defined]
    docker = raw_manifest(docker_ref)
    assert docker["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    zstd = raw_manifest(zstd_ref)
    # The build's own layers (stored uncompressed) go up as zstd; the base's as they were pulled.
    kinds = [layer["mediaType"].rsplit("+", 1)[-1] for layer in zstd["layers"]]  # type: ignore[attr-defined]
    assert kinds == [kinds[0], "zstd", "zstd"] and kinds[0] != "zstd", kinds

    fresh = tmp_path / "store-b"
    busybox_image(fresh)
    second_id, progress = build_ok(fresh, context, "--cache-from", f"type=registry,ref={cache_ref}")
    steps = step_results(progress)
    assert len(steps) == STEPS and all(steps.values()), progress
    assert second_id == first_id


def test_pull_fetches_a_newer_base_the_store_already_names(
    tmp_path: Path, busybox_image: Callable[[Path], str], plain_registry: RegistryServer
) -> None:
    remote = f"{plain_registry.host}/cli/base:latest"
    seed = tmp_path / "seed"
    busybox_image(seed)
    seed_ctx = tmp_path / "seed-ctx"
    seed_ctx.mkdir()
    (seed_ctx / "Dockerfile").write_text("FROM busybox\n")
    build_ok(seed, seed_ctx, "--output", f"type=registry,name={remote}")  # v1: busybox as it is

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {remote}\nRUN echo hi > /hi\n")
    store = tmp_path / "store"
    old_id, _ = build_ok(store, ctx)  # pulls v1: the store has nothing

    (seed_ctx / "Dockerfile").write_text("FROM busybox\nLABEL base=v2\n")
    build_ok(seed, seed_ctx, "--push", "-t", remote)  # v2 under the same tag

    same_id, _ = build_ok(store, ctx)  # without --pull the stored v1 is used
    assert same_id == old_id
    new_id, progress = build_ok(store, ctx, "--pull")
    assert new_id != old_id
    labels = config_of(store, new_id)["config"]["Labels"]  # type: ignore[index]
    assert labels == {"base": "v2"}
    assert "cache miss" in progress  # the RUN re-ran on the new base


class Forwarder:
    """A TCP forwarder from ``listen`` (any address) to ``upstream`` (host, port)."""

    def __init__(self, listen: str, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.sock = socket.create_server((listen, 0))
        self.port: int = self.sock.getsockname()[1]
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed.set()
        self.sock.close()


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine other than 127.x (what a route outwards would use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))  # no packet is sent: only the route is looked up
            address: str = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


@pytest.fixture
def remote_registry(plain_registry: RegistryServer) -> Iterator[str]:
    """``ADDRESS:PORT`` of the plain-HTTP registry at a non-loopback address."""
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    host, port = plain_registry.host.split(":")
    forwarder = Forwarder(address, (host, int(port)))
    yield f"{address}:{forwarder.port}"
    forwarder.close()


def test_insecure_registry_reaches_a_plain_http_registry(
    tmp_path: Path, busybox_image: Callable[[Path], str], remote_registry: str
) -> None:
    seed = tmp_path / "seed"
    busybox_image(seed)
    seed_ctx = tmp_path / "seed-ctx"
    seed_ctx.mkdir()
    (seed_ctx / "Dockerfile").write_text("FROM busybox\n")
    base = f"{remote_registry}/insecure/base:1"
    build_ok(seed, seed_ctx, "--insecure-registry", remote_registry, "--output", f"type=registry,name={base}")

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}\nRUN echo hi > /hi\n")
    image_id, _ = build_ok(tmp_path / "store", ctx, "--insecure-registry", remote_registry.split(":")[0])
    assert image_id.startswith("sha256:")
