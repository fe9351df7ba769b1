"""The step cache: keys cover every input, records persist and survive restarts, misses explain."""

from __future__ import annotations

from pathlib import Path

from forklift.execute.cache import (
    BuildCache,
    CacheRecord,
    LayerRef,
    SourceDigest,
    StepInputs,
    StepPosition,
    explain_miss,
)

BASE = StepInputs(
    parent="sha256:p",
    instruction="RUN make",
    env=(("A", "1"),),
    sources=(SourceDigest("context .", "sha256:s", (("a.c", "d1"), ("b.c", "d2"))),),
    metadata=(("network", "default"),),
)


def test_key_changes_with_each_input_and_only_then() -> None:
    same = StepInputs(BASE.parent, BASE.instruction, BASE.env, BASE.sources, BASE.metadata)
    assert same.key() == BASE.key()
    variants = [
        StepInputs("sha256:q", BASE.instruction, BASE.env, BASE.sources, BASE.metadata),
        StepInputs(BASE.parent, "RUN make all", BASE.env, BASE.sources, BASE.metadata),
        StepInputs(BASE.parent, BASE.instruction, (("A", "2"),), BASE.sources, BASE.metadata),
        StepInputs(
            BASE.parent, BASE.instruction, BASE.env, (SourceDigest("context .", "sha256:t"),), BASE.metadata
        ),
        StepInputs(BASE.parent, BASE.instruction, BASE.env, BASE.sources, (("network", "none"),)),
    ]
    keys = {v.key() for v in variants}
    assert len(keys) == len(variants) and BASE.key() not in keys
    # Per-file digests explain; they do not enter the key beyond the set digest.
    assert (
        StepInputs(
            BASE.parent, BASE.instruction, BASE.env, (SourceDigest("context .", "sha256:s"),), BASE.metadata
        ).key()
        == BASE.key()
    )


def test_records_persist_across_instances(tmp_path: Path) -> None:
    layer = LayerRef("sha256:l", "sha256:d", 10, "application/vnd.oci.image.layer.v1.tar")
    BuildCache(tmp_path).put(CacheRecord(BASE.key(), "2024-01-01T00:00:00Z", layer, {"x": "y"}), BASE)
    again = BuildCache(tmp_path).get(BASE.key())
    assert again == CacheRecord(BASE.key(), "2024-01-01T00:00:00Z", layer, {"x": "y"})
    assert BuildCache(tmp_path).get("sha256:nothing") is None
    assert BuildCache(tmp_path).layer_digests() == {"sha256:l"}


def test_corrupt_record_is_a_miss(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path)
    cache.put(CacheRecord(BASE.key(), "t"), BASE)
    next((tmp_path / "cache" / "steps").glob("*.json")).write_text("{not json")
    assert cache.get(BASE.key()) is None


def test_positions_remember_last_inputs(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path)
    pos = StepPosition("ctx", "builder", 2)
    assert cache.last_inputs(pos) is None
    cache.remember(pos, BASE)
    assert cache.last_inputs(pos) == BASE
    assert cache.last_inputs(StepPosition("ctx", "builder", 3)) is None


def test_explain_names_the_changed_file_argument_option_and_parent() -> None:
    assert explain_miss(None, BASE) == "not built before"
    changed_file = StepInputs(
        BASE.parent, BASE.instruction, BASE.env,
        (SourceDigest("context .", "sha256:x", (("a.c", "d1"), ("b.c", "CHANGED"), ("new.h", "d3"))),),
        BASE.metadata,
    )  # fmt: skip
    why = explain_miss(BASE, changed_file)
    assert "b.c" in why and "changed" in why and "new.h" in why and "added" in why and "a.c" not in why
    changed_arg = StepInputs(BASE.parent, BASE.instruction, (("A", "2"),), BASE.sources, BASE.metadata)
    assert explain_miss(BASE, changed_arg) == "argument A changed ('1' -> '2')"
    changed_parent = StepInputs("sha256:other", BASE.instruction, BASE.env, BASE.sources, BASE.metadata)
    assert explain_miss(BASE, changed_parent, parent_reason="step 2 re-ran") == "step 2 re-ran"
    assert explain_miss(BASE, changed_parent) == "parent changed"
    changed_opt = StepInputs(BASE.parent, BASE.instruction, BASE.env, BASE.sources, (("network", "none"),))
    assert explain_miss(BASE, changed_opt) == "option network changed"
    assert "instruction changed" in explain_miss(
        BASE, StepInputs(BASE.parent, "RUN x", BASE.env, BASE.sources, BASE.metadata)
    )
    assert explain_miss(BASE, BASE).startswith("cache entry missing")
