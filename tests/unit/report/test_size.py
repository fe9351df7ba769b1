"""Size attribution: per layer with its step, largest files, compressed sizes, build records, budgets."""

from __future__ import annotations

import io
import json
import random
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from forklift.errors import BuildError, ForkliftError
from forklift.oci.compression import Compression, compress_file
from forklift.oci.image import Image, image_layers, load_image, write_image
from forklift.oci.model import Descriptor, Digest, HistoryEntry, MediaType
from forklift.oci.mutate import EMPTY, append_layer, with_history
from forklift.oci.store import Store
from forklift.report.size import (
    BuildRecord,
    ImageSize,
    StageWeight,
    analyze_image,
    build_record_path,
    check_max_size,
    describe_step,
    enforce_max_size,
    human_bytes,
    make_build_record,
    measure_layer,
    parse_size,
    read_build_record,
    render_text,
    size_json,
    stage_weight,
    summarize,
    write_build_record,
)

NAME = "docker.io/library/app:latest"
_TYPES = {"none": MediaType.OCI_LAYER, "gzip": MediaType.OCI_LAYER_GZIP, "zstd": MediaType.OCI_LAYER_ZSTD}


def layer_tar(
    files: dict[str, bytes], *, whiteouts: tuple[str, ...] = (), dirs: tuple[str, ...] = ()
) -> bytes:
    """An uncompressed layer tar with directories, regular files and whiteout entries."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for path in whiteouts:
            head, _, base = path.rpartition("/")
            tar.addfile(tarfile.TarInfo(f"{head}/.wh.{base}" if head else f".wh.{base}"))
    return buf.getvalue()


def put_layer(store: Store, raw: bytes, compression: Compression = "none") -> tuple[Descriptor, Digest]:
    """``raw`` stored with ``compression``: its descriptor and diff_id."""
    out = io.BytesIO()
    result = compress_file(io.BytesIO(raw), out, compression)
    digest = store.put_bytes(out.getvalue())
    return Descriptor(_TYPES[compression], digest, len(out.getvalue())), Digest.parse(result.diff_id)


Step = tuple[str, bytes | None, Compression]  # created_by, layer tar (None: no layer), compression


def make_image(store: Store, steps: list[Step], name: str = NAME) -> Image:
    """An image from ``steps`` written into ``store`` under ``name``; returns it loaded from the store."""
    img = EMPTY
    for created_by, raw, compression in steps:
        entry = HistoryEntry(created_by=created_by, created="2024-01-01T00:00:00Z")
        if raw is None:
            img = with_history(img, entry)
        else:
            desc, diff_id = put_layer(store, raw, compression)
            img = append_layer(img, desc, diff_id, entry)
    write_image(store, img, name=name)
    return load_image(store, name)


def incompressible(n: int, seed: int = 1) -> bytes:
    """``n`` bytes gzip cannot shrink (so compressed sizes are predictable)."""
    return random.Random(seed).randbytes(n)


@pytest.fixture
def store(store_root: Path) -> Store:
    return Store(store_root)


@pytest.fixture
def app(store: Store) -> Image:
    """A base layer (gzip), an ENV step, a big junk-free binary layer, a layer that deletes a file."""
    base = layer_tar(
        {"bin/sh": b"#!" + b"s" * 3000, "etc/passwd": b"root:x:0:0::/root:/bin/sh\n"}, dirs=("bin", "etc")
    )
    binary = layer_tar({"app/server": b"\x7fELF" + b"\0" * 250_000, "app/README": b"hello"}, dirs=("app",))
    cleanup = layer_tar({}, whiteouts=("etc/passwd",))
    return make_image(
        store,
        [
            ("ADD rootfs.tar / # buildkit", base, "gzip"),
            ("ENV A=1", None, "none"),
            ("COPY --from=builder /out /app # buildkit", binary, "none"),
            ("RUN /bin/sh -c rm /etc/passwd # buildkit", cleanup, "none"),
        ],
    )


# ---- units ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1048576", 1048576),
        ("17b", 17),
        ("50MB", 50_000_000),
        ("50mb", 50_000_000),
        ("50M", 50_000_000),
        ("1.5GB", 1_500_000_000),
        ("2k", 2000),
        ("2 kB", 2000),
        ("1KiB", 1024),
        ("512MiB", 512 * 1024**2),
        ("1GiB", 1024**3),
        ("1gi", 1024**3),
        ("2TB", 2 * 1000**4),
        (" 3 GiB ", 3 * 1024**3),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "-5MB", "5XB", "5 MB extra", "1i", "1.2.3GB", "ten"])
def test_parse_size_rejects_nonsense(text: str) -> None:
    with pytest.raises(ForkliftError, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (2_900_000, "2.9 MB"),
        (212_000_000, "212 MB"),
        (99_960, "100 kB"),
    ],
)
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


@pytest.mark.parametrize(
    ("created_by", "step"),
    [
        ("RUN /bin/sh -c make # buildkit", "RUN make"),
        ('/bin/sh -c #(nop)  CMD ["sh"]', 'CMD ["sh"]'),
        ("/bin/sh -c apt-get update", "RUN apt-get update"),
        ("COPY --from=builder /out /app # buildkit", "COPY --from=builder /out /app"),
        ("RUN |1 V=2 /bin/sh -c   echo   $V # buildkit", "RUN |1 V=2 /bin/sh -c echo $V"),
        ("", ""),
    ],
)
def test_describe_step(created_by: str, step: str) -> None:
    assert describe_step(created_by) == step


# ---- analysis ------------------------------------------------------------------------------------------


def test_layers_with_their_steps_and_sizes(store: Store, app: Image) -> None:
    size = analyze_image(store, app, name="app")
    assert size.name == "app"
    assert [layer.step for layer in size.layers] == [
        "ADD rootfs.tar /",
        "COPY --from=builder /out /app",
        "RUN rm /etc/passwd",
    ]
    assert [layer.index for layer in size.layers] == [1, 2, 3]
    assert size.empty_steps == 1
    descs = image_layers(app)
    # base: stored gzip (compressed size is the blob, uncompressed is the tar read back)
    base = size.layers[0]
    assert base.compressed == descs[0].size and not base.compressed_estimated
    assert base.uncompressed is not None and base.uncompressed > descs[0].size
    assert base.uncompressed % 512 == 0  # the whole tar, zero blocks included
    # built layer: stored uncompressed, so its compressed size is a gzip estimate, far smaller
    binary = size.layers[1]
    assert binary.uncompressed == descs[1].size
    assert binary.compressed is not None and binary.compressed_estimated
    assert binary.compressed < binary.uncompressed // 10
    assert size.uncompressed == sum(layer.uncompressed for layer in size.layers)
    assert size.compressed == size.config_bytes + sum(layer.compressed or 0 for layer in size.layers)
    assert size.compressed_estimated


def test_largest_files_per_layer(store: Store, app: Image) -> None:
    size = analyze_image(store, app, top=1)
    assert [(f.path, f.size) for f in size.layers[1].largest] == [("/app/server", 250_004)]
    size = analyze_image(store, app, top=5)
    assert [f.path for f in size.layers[1].largest] == ["/app/server", "/app/README"]
    assert [f.path for f in size.layers[0].largest] == ["/bin/sh", "/etc/passwd"]
    assert size.layers[0].entries == 4  # two directories, two files
    assert size.layers[2].whiteouts == 1 and size.layers[2].largest == ()


def test_largest_files_ranked_among_many(store: Store) -> None:
    files = {f"f{i:03}": b"x" * ((i * 37) % 101) for i in range(200)}
    img = make_image(store, [("COPY . /", layer_tar(files), "zstd")])
    size = analyze_image(store, img, top=3)
    expected = sorted(files.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:3]
    assert [(f.path, f.size) for f in size.layers[0].largest] == [("/" + k, len(v)) for k, v in expected]
    assert size.layers[0].compressed == image_layers(img)[0].size  # zstd: as stored


def test_measurements_are_cached_by_layer_digest(store: Store, app: Image) -> None:
    desc = image_layers(app)[1]
    first = measure_layer(store, desc, top=2)
    cache = store.root / "buildinfo" / "layers" / f"sha256-{desc.digest.hex}.json"
    assert cache.is_file()
    # A cached answer does not read the blob: prove it by removing the blob.
    store.blob_path(desc.digest).unlink()
    assert measure_layer(store, desc, top=2) == first


def test_a_damaged_cache_entry_is_measured_again(store: Store, app: Image) -> None:
    desc = image_layers(app)[1]
    first = measure_layer(store, desc)
    cache = store.root / "buildinfo" / "layers" / f"sha256-{desc.digest.hex}.json"
    cache.write_text("{not json")
    assert measure_layer(store, desc) == first
    assert json.loads(cache.read_text())["uncompressed"] == first.uncompressed


def test_without_measuring_built_layers_are_not_read(store: Store, app: Image) -> None:
    size = analyze_image(store, app, measure=False)
    descs = image_layers(app)
    # the gzip base is measured once (its uncompressed size is not in the manifest) ...
    assert size.layers[0].compressed == descs[0].size
    assert size.layers[0].uncompressed == measure_layer(store, descs[0]).uncompressed
    # ... layers stored uncompressed are not read: no compressed size, no files
    assert size.layers[1].uncompressed == descs[1].size and size.layers[1].compressed is None
    assert size.compressed is None
    assert size.layers[1].largest == ()
    cached = {p.name for p in (store.root / "buildinfo" / "layers").iterdir()}
    assert cached == {f"sha256-{descs[0].digest.hex}.json"}
    # once measured, the cache serves the cheap path too
    analyze_image(store, app)
    assert analyze_image(store, app, measure=False).layers[1].compressed is not None


def test_a_corrupt_layer_is_an_image_error(store: Store) -> None:
    img = make_image(store, [("COPY x /", b"this is not a tar file" * 40, "none")])
    with pytest.raises(ForkliftError, match="layer"):
        analyze_image(store, img)


def test_scratch_image_has_no_layers(store: Store) -> None:
    img = make_image(store, [('CMD ["x"]', None, "none")])
    size = analyze_image(store, img)
    assert size.layers == () and size.uncompressed == 0 and size.compressed == size.config_bytes
    assert "0 layers" in render_text(size)


def test_busybox_fixture_image(store_root: Path, busybox_image: Callable[[Path], str]) -> None:
    name = busybox_image(store_root)
    store = Store(store_root)
    size = analyze_image(store, load_image(store, name), name=name)
    assert len(size.layers) == 1
    assert size.layers[0].largest[0].path == "/bin/busybox"
    assert size.layers[0].largest[0].size == Path("/bin/busybox").stat().st_size


# ---- outputs -------------------------------------------------------------------------------------------


def test_text_output(store: Store, app: Image) -> None:
    text = render_text(analyze_image(store, app, name="app:latest"))
    assert text.startswith("app:latest\n")
    assert "3 layers, plus 1 step that made no layer" in text
    assert "COPY --from=builder /out /app" in text
    assert "/app/server" in text and "250 kB" in text
    assert "deletes 1 path" in text
    assert "gzip estimate" in text
    assert "stages" not in text  # no build record


def test_json_output(store: Store, app: Image) -> None:
    doc = size_json(analyze_image(store, app, name="app"))
    json.dumps(doc)  # plain JSON
    assert doc["uncompressed_bytes"] == sum(layer["uncompressed_bytes"] for layer in doc["layers"])
    assert doc["layers"][1]["created_by"] == "COPY --from=builder /out /app # buildkit"
    assert doc["layers"][1]["largest_files"][0] == {"path": "/app/server", "bytes": 250_004}
    assert doc["build"] is None and doc["summary"] is None


# ---- build records -------------------------------------------------------------------------------------


def builder_and_final(store: Store) -> tuple[Image, Image]:
    """A builder (shared base plus 3 heavy layers) and a final image (shared base plus the binary)."""
    base = ("ADD rootfs.tar /", layer_tar({"bin/sh": b"s" * 5000}), "gzip")
    junk = [
        (f"RUN make part{i}", layer_tar({f"src/obj{i}.o": incompressible(40_000, i)}), "none")
        for i in range(3)
    ]
    builder = make_image(store, [base, *junk], name="docker.io/library/builder:latest")  # type: ignore[list-item]
    binary = ("COPY --from=builder /src/app /app", layer_tar({"app": incompressible(7000)}), "none")
    final = make_image(store, [base, ("WORKDIR /", None, "none"), binary])  # type: ignore[list-item]
    return builder, final


def record_for(store: Store, builder: Image, final: Image, digest: str) -> BuildRecord:
    return BuildRecord(
        image_digest=digest,
        image_id="sha256:" + "1" * 64,
        target="final",
        stages=(
            stage_weight(store, index=0, name="builder", layers=image_layers(builder), final=False),
            StageWeight(index=1, name="unused", built=False),
            stage_weight(store, index=2, name="final", layers=image_layers(final), final=True),
        ),
    )


def test_stage_weight_from_layers(store: Store) -> None:
    builder, _ = builder_and_final(store)
    weight = stage_weight(store, index=0, name="builder", layers=image_layers(builder), final=False)
    descs = image_layers(builder)
    assert weight.layers == 4
    assert weight.stored_bytes == sum(d.size for d in descs)
    base_plain = measure_layer(store, descs[0]).uncompressed
    assert weight.uncompressed_bytes == base_plain + sum(d.size for d in descs[1:])
    assert weight.compressed_bytes is None  # built layers are not compressed until exported
    assert weight.layer_sizes == (base_plain, *(d.size for d in descs[1:]))


def test_build_record_round_trip(store: Store) -> None:
    builder, final = builder_and_final(store)
    digest = str(load_image(store, NAME).digest)
    record = record_for(store, builder, final, digest)
    write_build_record(store.root, digest, record)
    path = build_record_path(store.root, digest)
    assert path == store.root / "buildinfo" / f"{digest.split(':')[1]}.json"
    assert read_build_record(store.root, digest) == record
    mtime = path.stat().st_mtime_ns
    write_build_record(store.root, digest, record)  # unchanged: not rewritten
    assert path.stat().st_mtime_ns == mtime
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert read_build_record(store.root, "sha256:" + "0" * 64) is None
    assert read_build_record(store.root, "not a digest") is None


def test_damaged_or_foreign_records_read_as_none(store: Store) -> None:
    digest = "sha256:" + "a" * 64
    path = build_record_path(store.root, digest)
    path.parent.mkdir(parents=True)
    for text in ("{", "[]", '{"version": 99, "stages": []}', '{"version": 1, "stages": [{"name": "x"}]}'):
        path.write_text(text)
        assert read_build_record(store.root, digest) is None, text


def test_a_record_without_layer_detail_has_no_kept_out_figure() -> None:
    record = BuildRecord(
        image_digest="sha256:" + "b" * 64,
        target="final",
        stages=(
            StageWeight(index=0, name="builder", stored_bytes=900),
            StageWeight(index=1, name="final", final=True, stored_bytes=90),
        ),
    )
    assert record.final is not None and record.final.size == 90
    assert [s.name for s in record.left_out] == ["builder"]
    assert record.kept_out_bytes() is None
    assert summarize(record) == "final image 90 B; builder stage 'builder' weighed 900 B and was left out"


def test_summary_of_a_multi_stage_build(store: Store) -> None:
    builder, final = builder_and_final(store)
    digest = str(load_image(store, NAME).digest)
    record = record_for(store, builder, final, digest)
    final_weight = record.stages[2]
    builder_weight = record.stages[0]
    kept_out = sum(d.size for d in image_layers(builder)[1:])  # the shared base is shipped
    assert record.kept_out_bytes() == kept_out
    assert summarize(record) == (
        f"final image {human_bytes(final_weight.size)} in 2 layers; builder stage 'builder' weighed "
        f"{human_bytes(builder_weight.size)} and was left out "
        f"({human_bytes(kept_out)} of its layers are not in the final image)"
    )
    # With the measured image the summary gives the compressed size too.
    write_build_record(store.root, digest, record)
    size = analyze_image(store, load_image(store, NAME), name="app")
    assert size.build == record
    line = summarize(record, size)
    assert line.startswith(f"final image {human_bytes(size.uncompressed)} (")
    assert f"{human_bytes(size.compressed or 0)} est. compressed) in 2 layers;" in line


def test_summary_of_a_single_stage_build(store: Store, app: Image) -> None:
    record = BuildRecord(
        image_digest="sha256:" + "c" * 64,
        stages=(stage_weight(store, index=0, name="0", layers=image_layers(app), final=True),),
    )
    assert summarize(record).startswith("image ")
    assert "left out" not in summarize(record)
    assert summarize(record).endswith("in 3 layers")


def test_summary_names_several_builders(store: Store) -> None:
    record = BuildRecord(
        image_digest="sha256:" + "d" * 64,
        stages=(
            StageWeight(index=0, name="deps", layers=0, uncompressed_bytes=5_000_000),
            StageWeight(index=1, name="1", layers=0, uncompressed_bytes=7_000_000),
            StageWeight(index=2, name="final", final=True, layers=0, uncompressed_bytes=1_000),
        ),
    )
    assert summarize(record) == (
        "final image 1.0 kB in 0 layers; builder stages 'deps' 5.0 MB, #1 7.0 MB were left out"
    )


def test_stages_in_text_and_json(store: Store) -> None:
    builder, final = builder_and_final(store)
    digest = str(load_image(store, NAME).digest)
    write_build_record(store.root, digest, record_for(store, builder, final, digest))
    size = analyze_image(store, load_image(store, NAME), name="app")
    text = render_text(size)
    assert "stages (as forklift built them):" in text
    table = text.split("stages (as forklift built them):\n", 1)[1].split("\n\n", 1)[0].splitlines()
    lines = {line.split()[1]: line for line in table[1:]}
    assert (
        "left out" in lines["builder"] and "not built" in lines["unused"] and "final image" in lines["final"]
    )
    doc = size_json(size)
    assert [s["name"] for s in doc["build"]["stages"]] == ["builder", "unused", "final"]
    assert doc["summary"] == summarize(size.build or record_for(store, builder, final, digest), size)


# ---- --max-size ----------------------------------------------------------------------------------------


def test_max_size_within_budget(store: Store, app: Image) -> None:
    size = analyze_image(store, app, measure=False)
    check_max_size(size, "1GB")
    check_max_size(size, size.uncompressed)  # exactly at the budget is fine


def test_max_size_over_budget_names_the_largest_layers(store: Store, app: Image) -> None:
    size = analyze_image(store, app, name="app:latest")
    with pytest.raises(BuildError) as info:
        check_max_size(size, "100kB")
    err = info.value
    assert "image app:latest is" in err.message
    assert "over the --max-size budget of 100kB = 100 kB" in err.message
    assert err.hint is not None
    assert err.hint.startswith("largest layers: layer 2 ")
    assert "COPY --from=builder /out /app" in err.hint
    assert err.hint.index("layer 2") < err.hint.index("layer 1")


def test_max_size_with_a_bad_limit_is_a_user_error(store: Store, app: Image) -> None:
    with pytest.raises(ForkliftError, match="invalid size"):
        check_max_size(analyze_image(store, app, measure=False), "lots")


def test_make_build_record(store: Store) -> None:
    builder, final = builder_and_final(store)
    digest = str(load_image(store, NAME).digest)
    record = make_build_record(
        store,
        image_digest=digest,
        image_id="sha256:" + "1" * 64,
        final_index=2,
        built=[(2, "final", image_layers(final)), (0, "builder", image_layers(builder))],
        skipped=[(1, "unused")],
    )
    assert record == record_for(store, builder, final, digest)
    assert record.target == "final"
    assert [s.index for s in record.stages] == [0, 1, 2]


def test_enforce_max_size(store: Store, app: Image) -> None:
    enforce_max_size(store, app, "10MB", name="app")
    with pytest.raises(BuildError, match=r"image app is .* over the --max-size budget of 1KiB = 1\.0 kB"):
        enforce_max_size(store, app, "1KiB", name="app")


def test_a_stage_the_final_image_is_built_on_is_not_left_out(store: Store) -> None:
    builder, final = builder_and_final(store)
    base_only = image_layers(final)[:1]
    record = make_build_record(
        store,
        image_digest="sha256:" + "e" * 64,
        image_id="",
        final_index=2,
        built=[
            (0, "builder", image_layers(builder)),
            (1, "base", base_only),  # FROM busybox AS base ... FROM base
            (2, "final", image_layers(final)),
        ],
    )
    assert [record.role(s) for s in record.stages] == ["left out", "in the final image", "final image"]
    assert [s.name for s in record.left_out] == ["builder"]
    assert "'base'" not in summarize(record)
    assert "in the final image" in render_text(
        ImageSize(name="x", digest=record.image_digest, image_id="", config_bytes=0, layers=(), build=record)
    )


def test_layers_the_history_does_not_describe_still_count(store: Store, app: Image) -> None:
    from dataclasses import replace

    from forklift.oci.image import image_config
    from forklift.oci.mutate import with_image_config

    config = image_config(app)
    short = with_image_config(app, replace(config, history=config.history[:1]))  # names 1 of 3 layers
    write_image(store, short, name="docker.io/library/short:latest")
    size = analyze_image(store, load_image(store, "docker.io/library/short:latest"))
    assert [layer.step for layer in size.layers] == ["ADD rootfs.tar /", "", ""]
    assert size.uncompressed == analyze_image(store, app).uncompressed
