"""``forklift size`` on images forklift really built (busybox base, runc): the classic multi-stage shape.

The builder writes a binary and junk; the size report of the final image must show the binary and
none of the junk, attribute each layer to its step, and weigh the builder stage against the image.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from forklift.build import BuildOptions, BuildResult, build
from forklift.cli.main import main
from forklift.errors import BuildError
from forklift.oci.image import image_layers
from forklift.oci.store import Store
from forklift.report.progress import PlainRenderer
from forklift.report.size import (
    analyze_image,
    enforce_max_size,
    make_build_record,
    read_build_record,
    summarize,
    write_build_record,
)

pytestmark = pytest.mark.e2e
Built = tuple[Path, BuildResult]

DOCKERFILE = """\
FROM busybox AS builder
RUN mkdir /out && head -c 3000000 /dev/urandom > /junk.bin && echo built > /out/app \\
    && head -c 150000 /dev/zero > /out/data
FROM busybox AS unused
RUN exit 1
FROM busybox
WORKDIR /srv
COPY --from=builder /out/ /srv/
CMD ["cat", "/srv/app"]
"""


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory, busybox_image: Callable[[Path], str], oci_runtime: object
) -> Built:
    """The store with the final image (app) and the builder stage (app-builder) built (needs runc)."""
    base = tmp_path_factory.mktemp("size-e2e")
    store, ctx = base / "store", base / "ctx"
    store.mkdir()
    ctx.mkdir()
    busybox_image(store)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    build(BuildOptions(context=ctx, root=store, tags=("app-builder",), targets=("builder",)))
    result = build(BuildOptions(context=ctx, root=store, tags=("app",)), events=PlainRenderer(io.StringIO()))
    return store, result


def size_json(store: Path, name: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    try:
        main(["--root", str(store), "size", name, "--format", "json"])
    except SystemExit as exit_:
        assert not exit_.code
    doc: dict[str, object] = json.loads(capsys.readouterr().out)
    return doc


def test_final_image_layers_and_files(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    store, _ = built
    doc = size_json(store, "app", capsys)
    layers = doc["layers"]
    assert isinstance(layers, list)
    steps = [layer["step"] for layer in layers]
    assert steps[0] == "forklift import"  # the busybox fixture's only layer
    assert any(step.startswith("COPY") and "/srv/" in step for step in steps)
    files = {f["path"]: f["bytes"] for layer in layers for f in layer["largest_files"]}
    assert files["/srv/data"] == 150_000 and files["/srv/app"] == 6
    assert "/bin/busybox" in files
    assert not any("junk" in path for path in files)
    uncompressed = doc["uncompressed_bytes"]
    assert isinstance(uncompressed, int) and uncompressed < 3_000_000 + Path("/bin/busybox").stat().st_size


def test_builder_weighed_against_the_final_image(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    store, result = built
    # Whatever the build itself records, the builder must weigh more than the final image.
    record = read_build_record(store, result.image.digest)
    assert record is not None, "forklift build left no build record"
    final = record.final
    assert final is not None
    assert [s.name for s in record.left_out] == ["builder"]
    assert record.left_out[0].size > final.size
    assert "unused" not in [s.name for s in record.stages if s.built]
    assert "left out" in summarize(record)


def test_record_from_real_stage_layers(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    """The record the engine should write, made from the real builder and final layers: the shared
    busybox layer counts once, so what was kept out is the builder's own layer (the junk)."""
    store, result = built
    st = Store(store)
    from forklift.oci.image import load_image

    builder = load_image(st, "docker.io/library/app-builder:latest")
    final = result.image.image
    record = make_build_record(
        st,
        image_digest=result.image.digest,
        image_id=result.image.image_id,
        final_index=2,
        built=[(0, "builder", image_layers(builder)), (2, "2", image_layers(final))],
        skipped=[(1, "unused")],
    )
    assert image_layers(builder)[0].digest == image_layers(final)[0].digest
    kept_out = record.kept_out_bytes()
    assert kept_out is not None and kept_out == sum(d.size for d in image_layers(builder)[1:])
    assert kept_out > 3_000_000
    write_build_record(st.root, result.image.digest, record)
    size = analyze_image(st, final, name="app")
    assert size.build == record
    line = summarize(record, size)
    assert line.startswith("final image ") and "builder stage 'builder' weighed" in line
    main_doc = size_json(store, "app", capsys)
    assert main_doc["summary"] == line


def test_max_size_on_the_built_image(built: Built) -> None:
    store, result = built
    st = Store(store)
    enforce_max_size(st, result.image.image, "10MB", name="app")
    with pytest.raises(BuildError) as info:
        enforce_max_size(st, result.image.image, "1MB", name="app")
    assert info.value.hint is not None and "forklift import" in info.value.hint
