"""The build cache between machines: export after a real multi-stage build, import into an empty
store (busybox base only), rebuild: every step a hit and the same image ID.

Through a local OCI layout directory and through the real docker-registry (mode=max), and mode=min
(only the final stage's steps are hits). The registry's copy is checked with skopeo.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from registry_fixtures import (
    PASSWORD,
    USER,
    RegistryServer,
)

import forklift.execute.cache
from forklift.build import BuildOptions, BuildResult, build
from forklift.errors import ForkliftError
from forklift.execute.cache import (
    CACHE_ARTIFACT_TYPE,
    BuildCache,
    CacheRecord,
    LayerRef,
    RecordingBuildCache,
    StageCacheKeys,
    StepInputs,
    export_cache,
    import_cache,
    parse_cache_from,
    parse_cache_to,
)
from forklift.oci.model import Digest, MediaType
from forklift.oci.registry.auth import Credentials
from forklift.oci.store import Store
from forklift.report.progress import PlainRenderer
from support import missed, require_tool

pytestmark = pytest.mark.e2e

DOCKERFILE = """\
FROM busybox AS builder
COPY a.txt /src/a.txt
RUN cat /src/a.txt > /out.txt && echo built >> /out.txt

FROM busybox
ENV GREETING=hi
COPY --from=builder /out.txt /app/out.txt
RUN cat /app/out.txt > /app/copy.txt
CMD ["cat", "/app/copy.txt"]
"""


@pytest.fixture(autouse=True)
def _runtime() -> None:
    require_tool("runc")


@pytest.fixture
def recorders(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[RecordingBuildCache]]:
    """Builds in this test use a RecordingBuildCache (build.py imports BuildCache at call time)."""
    made: list[RecordingBuildCache] = []

    def recording(root: Path) -> RecordingBuildCache:
        cache = RecordingBuildCache(root)
        made.append(cache)
        return cache

    monkeypatch.setattr(forklift.execute.cache, "BuildCache", recording)
    yield made


def run_build(context: Path, store: Path) -> tuple[BuildResult, str]:
    out = io.StringIO()
    result = build(BuildOptions(context=context, root=store), events=PlainRenderer(out))
    return result, out.getvalue()


def step_titles(progress: str) -> list[str]:
    """Every step title of the plain progress, in order."""
    seen: dict[str, str] = {}
    for line in progress.splitlines():
        num, _, rest = line.partition(" ")
        if rest.startswith("[") and num not in seen:
            seen[num] = rest
    return list(seen.values())


@pytest.fixture
def built(
    tmp_path: Path, busybox_image: Callable[[Path], str], recorders: list[RecordingBuildCache]
) -> tuple[Path, Path, BuildResult, tuple[StageCacheKeys, ...]]:
    """(context, store, result, stage keys) of a first multi-stage build."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("A\n")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    store = tmp_path / "store-a"
    busybox_image(store)
    result, progress = run_build(ctx, store)
    assert len(missed(progress)) == 4  # both COPYs and both RUNs ran
    assert len(recorders) == 1
    stages = recorders[0].stage_keys({result.image.target})
    assert {s.stage for s in stages} == {"builder", result.image.target}
    assert [s.final for s in stages if s.stage == "builder"] == [False]
    return ctx, store, result, stages


def fresh_store(tmp_path: Path, name: str, busybox_image: Callable[[Path], str]) -> Path:
    root = tmp_path / name
    busybox_image(root)
    return root


def test_local_cache_round_trip_mode_max(
    built: tuple[Path, Path, BuildResult, tuple[StageCacheKeys, ...]],
    tmp_path: Path,
    busybox_image: Callable[[Path], str],
) -> None:
    ctx, store, first, stages = built
    dest = tmp_path / "ci-cache"
    exported = export_cache(Store(store), stages, parse_cache_to(f"type=local,dest={dest},mode=max"))
    assert exported.skipped == 0 and exported.layers == 4 and exported.entries >= 6
    index = json.loads((dest / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "cache"
    # Exporting again into the kept directory replaces the tag instead of adding a second one.
    again = export_cache(Store(store), stages, parse_cache_to(f"type=local,dest={dest},mode=max"))
    assert again.digest == exported.digest is not None
    assert len(json.loads((dest / "index.json").read_text())["manifests"]) == 1

    empty = fresh_store(tmp_path, "store-b", busybox_image)
    imported = import_cache(Store(empty), parse_cache_from(f"type=local,src={dest}"))
    assert imported.found and imported.entries == exported.entries
    second, progress = run_build(ctx, empty)
    assert missed(progress) == []
    assert progress.count("CACHED") == len(step_titles(progress)) == 6  # 2 FROMs, 2 COPYs, 2 RUNs
    assert second.image.image_id == first.image.image_id
    assert second.image.digest == first.image.digest


def test_registry_cache_round_trip_mode_max(
    built: tuple[Path, Path, BuildResult, tuple[StageCacheKeys, ...]],
    tmp_path: Path,
    busybox_image: Callable[[Path], str],
    plain_registry: RegistryServer,
) -> None:
    ctx, store, first, stages = built
    ref = f"{plain_registry.host}/forklift/cache-app:buildcache"
    exported = export_cache(Store(store), stages, parse_cache_to(f"type=registry,ref={ref},mode=max"))
    assert exported.layers == 4

    skopeo = require_tool("skopeo")
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    manifest = json.loads(raw)
    assert manifest["artifactType"] == CACHE_ARTIFACT_TYPE
    assert all(layer["mediaType"].endswith("+gzip") for layer in manifest["layers"])
    assert len(manifest["layers"]) == 4

    empty = fresh_store(tmp_path, "store-c", busybox_image)
    imported = import_cache(Store(empty), parse_cache_from(f"type=registry,ref={ref}"))
    assert imported.found and imported.layers_fetched == 5  # the config and the four layers
    second, progress = run_build(ctx, empty)
    assert missed(progress) == []
    assert progress.count("CACHED") == len(step_titles(progress))
    assert second.image.image_id == first.image.image_id
    assert second.image.digest == first.image.digest

    # A tag that holds no cache is not an error for --cache-from (BuildKit warns and builds).
    absent = import_cache(Store(empty), parse_cache_from(f"type=registry,ref={plain_registry.host}/none:x"))
    assert not absent.found


def test_mode_min_exports_only_the_final_stage(
    built: tuple[Path, Path, BuildResult, tuple[StageCacheKeys, ...]],
    tmp_path: Path,
    busybox_image: Callable[[Path], str],
) -> None:
    ctx, store, first, stages = built
    dest = tmp_path / "min-cache"
    export_cache(Store(store), stages, parse_cache_to(f"type=local,dest={dest}"))
    empty = fresh_store(tmp_path, "store-d", busybox_image)
    import_cache(Store(empty), parse_cache_from(f"type=local,src={dest}"))
    second, progress = run_build(ctx, empty)
    # The builder runs again; its output is byte-identical, so the final stage is all hits.
    assert [m.split(" ", 1)[0] for m in missed(progress)] == ["[builder", "[builder"]
    assert second.image.image_id == first.image.image_id


def test_registry_with_basic_auth_and_a_second_repository(
    tmp_path: Path, basic_registry: RegistryServer
) -> None:
    """Credentials reach the registry; a second repository gets the layers by cross-repository mount."""
    store = Store(tmp_path / "a")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        data = b"hello " * 4000
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    digest = store.put_bytes(buf.getvalue())
    inputs = StepInputs(parent="sha256:" + "0" * 64, instruction="RUN hello")
    record = CacheRecord(
        inputs.key(),
        "2024-01-01T00:00:00Z",
        LayerRef(str(digest), str(digest), len(buf.getvalue()), MediaType.OCI_LAYER),
    )
    BuildCache(store.root).put(record, inputs)
    stages = [StageCacheKeys("app", (record.key,), final=True)]
    creds = Credentials(USER, PASSWORD)
    first = f"{basic_registry.host}/team/one:cache"
    with pytest.raises(ForkliftError):  # no credentials: refused
        export_cache(
            store, stages, parse_cache_to(f"type=registry,ref={first}"), docker_config=tmp_path / "none.json"
        )
    export_cache(store, stages, parse_cache_to(f"type=registry,ref={first}"), credentials=creds)
    again = export_cache(store, stages, parse_cache_to(f"type=registry,ref={first}"), credentials=creds)
    assert again.sent == {"uploaded": 0, "mounted": 0, "existing": 1}
    second = f"{basic_registry.host}/team/two:cache"
    other = export_cache(store, stages, parse_cache_to(f"type=registry,ref={second}"), credentials=creds)
    assert other.sent == {"uploaded": 0, "mounted": 1, "existing": 0}

    fresh = Store(tmp_path / "b")
    result = import_cache(fresh, parse_cache_from(f"type=registry,ref={second}"), credentials=creds)
    assert (result.entries, result.layers_fetched) == (1, 2)
    assert BuildCache(fresh.root).get(record.key) == record
    assert fresh.read_blob(digest) == buf.getvalue()
    # The gzip form fetched is remembered as the layer's compressed form (a push reuses it).
    assert fresh.find_compressed(Digest.parse(str(digest)), "gzip") is not None
