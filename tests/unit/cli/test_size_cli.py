"""``forklift size NAME``: text, json and html (to stdout or -o FILE), name lookup, and user errors."""

from __future__ import annotations

import io
import json
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from forklift.cli.main import main
from forklift.oci.compression import compress_file
from forklift.oci.image import image_layers, load_image, write_image
from forklift.oci.model import Descriptor, Digest, HistoryEntry, MediaType
from forklift.oci.mutate import append_layer, with_history
from forklift.oci.store import Store
from forklift.report.size import BuildRecord, stage_weight, write_build_record

Capture = pytest.CaptureFixture[str]


def run(argv: list[str], capsys: Capture) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def add_layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def built(store_root: Path, busybox_image: Callable[[Path], str]) -> str:
    """busybox plus an app layer, named app:latest, with a build record of a heavier builder stage."""
    store = Store(store_root)
    base = load_image(store, busybox_image(store_root))
    raw = add_layer_tar({"app/server": b"\x7fELF" + b"\1" * 60_000})
    out = io.BytesIO()
    result = compress_file(io.BytesIO(raw), out, "none")
    digest = store.put_bytes(out.getvalue())
    img = append_layer(
        base,
        Descriptor(MediaType.OCI_LAYER, digest, len(raw)),
        Digest.parse(result.diff_id),
        HistoryEntry(created_by="COPY --from=builder /out/server /app/server # buildkit"),
    )
    img = with_history(img, HistoryEntry(created_by='CMD ["/app/server"]'))
    manifest = write_image(store, img, name="docker.io/library/app:latest")
    junk = add_layer_tar({"usr/lib/gcc/cc1": b"\2" * 500_000})
    junk_digest = store.put_bytes(junk)
    builder_layers = (*image_layers(base), Descriptor(MediaType.OCI_LAYER, junk_digest, len(junk)))
    record = BuildRecord(
        image_digest=str(manifest),
        target="runtime",
        stages=(
            stage_weight(store, index=0, name="builder", layers=builder_layers, final=False),
            stage_weight(store, index=1, name="runtime", layers=image_layers(img), final=True),
        ),
    )
    write_build_record(store_root, str(manifest), record)
    return "app:latest"


def test_text(store_root: Path, built: str, capsys: Capture) -> None:
    code, out, err = run(["--root", str(store_root), "size", built], capsys)
    assert (code, err) == (0, "")
    assert out.startswith("app:latest\n")
    assert "COPY --from=builder /out/server /app/server" in out
    assert "/bin/busybox" in out and "/app/server" in out
    assert "builder stage 'builder' weighed" in out and "left out" in out
    assert "2 layers, plus 1 step that made no layer" in out


def test_json_by_digest_and_top(store_root: Path, built: str, capsys: Capture) -> None:
    digest = str(Store(store_root).get_ref("docker.io/library/app:latest"))
    code, out, _ = run(["--root", str(store_root), "size", digest, "--format", "json", "--top", "1"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["name"] == digest and doc["digest"] == digest
    assert [len(layer["largest_files"]) for layer in doc["layers"]] == [1, 1]
    assert doc["layers"][1]["largest_files"] == [{"path": "/app/server", "bytes": 60_004}]
    assert [s["name"] for s in doc["build"]["stages"]] == ["builder", "runtime"]
    assert doc["summary"].startswith("final image ")


def test_html_to_a_file(
    store_root: Path, built: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "size.html"
    code, out, _ = run(
        ["--root", str(store_root), "size", built, "--format", "html", "-o", str(page)], capsys
    )
    assert (code, out) == (0, "")
    root = ET.fromstring(page.read_text(encoding="utf-8"))
    text = "".join(root.itertext())
    assert "Stages" in text and "/app/server" in text


def test_html_to_stdout(store_root: Path, built: str, capsys: Capture) -> None:
    code, out, _ = run(["--root", str(store_root), "size", built, "--format", "html"], capsys)
    assert code == 0
    assert ET.fromstring(out).tag == "html"


def test_image_id_prefix(store_root: Path, built: str, capsys: Capture) -> None:
    store = Store(store_root)
    image_id = load_image(store, "docker.io/library/app:latest").raw_config()
    prefix = Digest.of(image_id).hex[:12]
    code, out, _ = run(["--root", str(store_root), "size", prefix], capsys)
    assert code == 0 and out.startswith(prefix + "\n")


def test_unknown_image(store_root: Path, built: str, capsys: Capture) -> None:
    code, out, err = run(["--root", str(store_root), "size", "app:lates"], capsys)
    assert code == 1 and out == ""
    assert "error: no such image: app:lates" in err
    assert "Traceback" not in err


def test_unwritable_output(
    store_root: Path, built: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing-dir" / "size.txt"
    code, _, err = run(["--root", str(store_root), "size", built, "-o", str(target)], capsys)
    assert code == 1 and f"error: cannot write {target}" in err
