"""Push and pull of a ~200 MB image against a local docker-registry: forklift next to ``skopeo copy``.

The same image (4 uncompressed layers of random data, pushed as they are, since skopeo copy does
not compress either) is pushed by forklift from its store and by skopeo from an OCI layout holding
the same blobs, each to its own repository of one fresh registry on 127.0.0.1; then each pulls its
copy into an empty destination (forklift: a fresh store; skopeo: a fresh OCI layout). Ratios are
forklift time / skopeo time (best of --repeat rounds, each on a fresh registry).

    .venv/bin/python bench/bench_registry.py [--mb 200] [--layers 4] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from forklift.oci.model import Descriptor, Digest, ImageConfig, Manifest, MediaType
from forklift.oci.registry.client import RegistryOptions
from forklift.oci.registry.reference import parse_reference
from forklift.oci.registry.transfer import pull_image, push_image
from forklift.oci.store import Store


def start_registry(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = workdir / "config.yml"
    config.write_text(
        json.dumps(
            {
                "version": 0.1,
                "log": {"level": "error", "accesslog": {"disabled": True}},
                "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    host = f"127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"http://{host}/v2/", timeout=1).status_code == 200:
                return proc, host
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("docker-registry did not start")


def make_image(store: Store, layout: Path, total_mb: int, layers: int) -> Manifest:
    """The image in the store (named bench/image:v1) and as an OCI layout (tag v1), same blobs."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    per_layer = total_mb * 1024 * 1024 // layers
    descs = []
    diff_ids = []
    for i in range(layers):
        tar = _random_tar(per_layer, seed=i)
        digest = store.put_bytes(tar)
        descs.append(Descriptor(MediaType.OCI_LAYER, digest, len(tar)))
        diff_ids.append(digest)
    config = ImageConfig(architecture="amd64", os="linux", diff_ids=tuple(diff_ids)).to_bytes()
    config_desc = Descriptor(MediaType.OCI_CONFIG, store.put_bytes(config), len(config))
    manifest = Manifest(config=config_desc, layers=tuple(descs))
    raw = manifest.to_bytes()
    digest = store.put_bytes(raw)
    store.set_ref(str(parse_reference("bench/image:v1")), digest)
    for d in (config_desc.digest, *(x.digest for x in descs), digest):
        os.link(store.blob_path(d), layout / "blobs" / "sha256" / d.hex)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": MediaType.OCI_MANIFEST,
                "digest": str(digest),
                "size": len(raw),
                "annotations": {"org.opencontainers.image.ref.name": "v1"},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    return manifest


def _random_tar(size: int, seed: int) -> bytes:
    import io
    import random
    import tarfile

    buf = io.BytesIO()
    data = random.Random(seed).randbytes(size - 2048)
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"data-{seed}.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_round(work: Path, store: Store, manifest: Manifest, options: RegistryOptions) -> dict[str, float]:
    """One push and pull by each tool against a fresh registry; seconds per operation."""
    work.mkdir()
    proc, host = start_registry(work)
    layout = store.root.parent / "layout"
    fk_ref, sk_ref = f"{host}/bench/forklift:v1", f"{host}/bench/skopeo:v1"
    skopeo_push = [
        "skopeo",
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        f"oci:{layout}:v1",
        f"docker://{sk_ref}",
    ]
    skopeo_pull = [
        "skopeo",
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        f"docker://{sk_ref}",
        f"oci:{work}/oci:v1",
    ]
    fresh = Store(work / "store")
    try:
        out = {
            "sk push": timed(lambda: subprocess.run(skopeo_push, check=True)),
            "fk push": timed(lambda: push_image(store, "bench/image:v1", fk_ref, compression="none")),
            "sk pull": timed(lambda: subprocess.run(skopeo_pull, check=True)),
            "fk pull": timed(lambda: pull_image(fresh, fk_ref, options=options)),
        }
    finally:
        proc.terminate()
        proc.wait()
    assert fresh.get_ref(str(parse_reference(fk_ref))) == Digest.of(manifest.to_bytes()), (
        "pulled image differs"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    if not (shutil.which("skopeo") and shutil.which("docker-registry")):
        raise SystemExit("needs skopeo and docker-registry (scripts/setup.sh test)")
    options = RegistryOptions()
    with tempfile.TemporaryDirectory(prefix="forklift-bench-") as tmp:
        work = Path(tmp)
        store = Store(work / "store")
        manifest = make_image(store, work / "layout", args.mb, args.layers)
        size_mb = sum(d.size for d in manifest.layers) / 1e6
        print(f"image: {len(manifest.layers)} layers, {size_mb:.0f} MB")
        results: dict[str, list[float]] = {k: [] for k in ("fk push", "sk push", "fk pull", "sk pull")}
        for round_ in range(args.repeat):
            for key, seconds in run_round(work / f"round{round_}", store, manifest, options).items():
                results[key].append(seconds)
        for op in ("push", "pull"):
            fk, sk = min(results[f"fk {op}"]), min(results[f"sk {op}"])
            print(
                f"{op}: forklift {fk:.2f} s ({size_mb / fk:.0f} MB/s), skopeo copy {sk:.2f} s "
                f"({size_mb / sk:.0f} MB/s), ratio forklift/skopeo {fk / sk:.2f}"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
