"""``forklift build``'s registry and cache flags: parsing, errors without tracebacks, help text, and
the cache record lookup ``--cache-to`` exports from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forklift.build import OutputSpec
from forklift.cli.main import main
from forklift.errors import ForkliftError
from forklift.execute.cache import BuildCache, CacheRecord, LayerRef, StepInputs

INPUTS = StepInputs(parent="sha256:" + "1" * 64, instruction="RUN make", env=(("A", "1"),))


def test_get_entry_returns_the_record_with_the_inputs_that_made_its_key(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path)
    layer = LayerRef("sha256:" + "a" * 64, "sha256:" + "a" * 64, 10, "application/vnd.oci.image.layer.v1.tar")
    record = CacheRecord(INPUTS.key(), "2024-01-01T00:00:00Z", layer, {"layer_source": "upper"})
    cache.put(record, INPUTS)
    assert cache.get_entry(record.key) == (record, INPUTS)
    assert cache.get_entry("sha256:" + "f" * 64) is None
    # A record whose stored inputs no longer make its key is never handed out for export.
    path = tmp_path / "cache" / "steps" / (record.key.split(":")[1] + ".json")
    doc = json.loads(path.read_text())
    doc["inputs"]["instruction"] = "RUN something else"
    path.write_text(json.dumps(doc))
    assert cache.get_entry(record.key) is None
    assert cache.get(record.key) == record


def test_registry_outputs_parse_buildx_attributes() -> None:
    spec = OutputSpec.parse("type=registry,name=reg.example/a:1,compression=zstd,registry.insecure=true")
    assert (spec.type, spec.name, spec.compression, spec.insecure) == (
        "registry",
        "reg.example/a:1",
        "zstd",
        True,
    )
    assert OutputSpec.parse("type=image,name=a:1,push=true").type == "registry"
    assert OutputSpec.parse("type=image,name=a:1").type == "image"
    assert OutputSpec.parse("type=registry,oci-mediatypes=false").oci_mediatypes is False
    assert OutputSpec.parse("type=registry,compression=uncompressed").compression == "none"
    for bad in ("type=registry,compression=lz4", "type=registry,oci-mediatypes=maybe", "type=nope"):
        with pytest.raises(ForkliftError):
            OutputSpec.parse(bad)


@pytest.mark.parametrize(
    ("flag", "spec", "says"),
    [
        ("--cache-to", "type=gha", "unsupported --cache-to type"),
        ("--cache-to", "type=local,dest=/tmp/x,mode=most", "mode="),
        ("--cache-to", "type=registry", "needs ref=REF"),
        ("--cache-from", "type=local,dest=/tmp/x", "needs src=DIR"),
        ("--cache-from", "type=registry,ref=UPPER/Case:tag", "--cache-from"),
        ("--output", "type=registry,compression=lz4", "compression"),
    ],
)
def test_a_bad_spec_is_an_error_with_exit_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, spec: str, says: str
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    with pytest.raises(SystemExit) as exited:
        main(["--root", str(tmp_path / "store"), "build", flag, spec, str(tmp_path)])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and "Traceback" not in err
    assert not (tmp_path / "store" / "blobs").exists()  # nothing was built


def test_build_help_documents_the_registry_and_cache_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--cache-to", "--cache-from", "--pull", "--insecure-registry", "--push"):
        assert flag in text
    for form in ("type=registry,ref=REF", "type=local,dest=DIR", "type=local,src=DIR", "mode=min|max"):
        assert form in text
    assert "type=registry[,name=REF] (push)" in text


def test_a_corrupt_cache_source_fails_the_build_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "cache"
    broken.mkdir()
    (broken / "index.json").write_text('{"manifests":')
    with pytest.raises(SystemExit) as exited:
        main(["--root", str(tmp_path / "s"), "build", "--cache-from", f"type=local,src={broken}", "."])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert f"error: --cache-from {broken}: " in err and "not an OCI image index" in err
    assert "Traceback" not in err
