"""The stage graph: bases, edges, references, ARG scoping in FROM, pruning to targets, errors."""

from __future__ import annotations

import pytest

from forklift.dockerfile.instructions import parse_dockerfile
from forklift.dockerfile.syntax import parse
from forklift.errors import ExpansionError, PlanError, SourceLocation
from forklift.oci.model import Platform
from forklift.plan.graph import (
    BaseKind,
    PlanOptions,
    StageEdge,
    StageGraph,
    is_image_reference,
    plan_build,
    stage_graph_json,
    topological_order,
)
from forklift.plan.ops import CopyOp, ExecOp, ImageRef, NamedContextRef, SourceOp, StageRef, Via

AMD64 = Platform(os="linux", architecture="amd64")


def plan(text: str, **options: object) -> StageGraph:
    opts = PlanOptions(build_platform=AMD64, **options)  # type: ignore[arg-type]
    return plan_build(parse_dockerfile(parse(text, file="Dockerfile")), opts)


def plan_error(text: str, **options: object) -> PlanError:
    with pytest.raises(PlanError) as info:
        plan(text, **options)
    return info.value


CLASSIC = """\
FROM debian:bookworm AS builder
RUN make
FROM busybox AS unused
RUN exit 1
FROM debian:bookworm-slim
WORKDIR /app
COPY --from=builder /src/app ./app
CMD ["./app"]
"""


def test_classic_shape() -> None:
    graph = plan(CLASSIC)
    builder, unused, final = graph.stages
    assert (builder.base.kind, builder.base.ref) == (BaseKind.IMAGE, "debian:bookworm")
    assert final.depends_on == (
        StageEdge(dependency=0, dependent=2, via=Via.COPY_FROM, location=final.depends_on[0].location),
    )
    assert final.depends_on[0].line == 7
    assert graph.targets == (2,)
    assert [s.built for s in graph.stages] == [True, False, True]
    assert unused.skipped_reason == "not needed by target 'stage-2'"
    assert graph.build_order == (0, 2)
    assert [s.display_name for s in graph.built_stages] == ["builder", "stage-2"]
    # The ops: FROM first, then one op per instruction; COPY --from resolved to the stage.
    kinds = [type(op) for op in final.ops]
    assert kinds[0] is SourceOp
    copy = final.ops[2]
    assert isinstance(copy, CopyOp) and copy.source == StageRef(index=0, name="builder")
    assert isinstance(builder.ops[1], ExecOp)


def test_json_lists_every_stage() -> None:
    data = stage_graph_json(plan(CLASSIC, targets=("builder",)))
    assert [s["name"] for s in data["stages"]] == ["builder", "unused", None]
    assert data["stages"][0]["built"] is True
    assert data["stages"][1] == {
        "index": 1,
        "name": "unused",
        "base": {"kind": "image", "ref": "busybox", "text": "busybox"},
        "platform": None,
        "depends_on": [],
        "images": [],
        "built": False,
        "skipped_reason": "not needed by target 'builder'",
    }
    assert data["stages"][2]["depends_on"] == [
        {"stage": "builder", "index": 0, "instruction": "COPY --from", "line": 7}
    ]
    assert data["stages"][2]["skipped_reason"] == "not needed by target 'builder'"


def test_several_targets() -> None:
    text = "FROM a AS one\nFROM b AS two\nFROM c AS three\nCOPY --from=one / /\n"
    graph = plan(text, targets=("two", "THREE"))
    assert graph.targets == (1, 2)
    assert [s.built for s in graph.stages] == [True, True, True]
    graph = plan(text, targets=("two",))
    assert [s.built for s in graph.stages] == [False, True, False]
    assert graph.stages[0].skipped_reason == "not needed by target 'two'"
    text4 = text + "FROM d AS four\n"
    graph = plan(text4, targets=("one", "two"))
    assert graph.stages[3].skipped_reason == "not needed by targets 'one' and 'two'"


def test_bad_target_lists_stage_names() -> None:
    err = plan_error(CLASSIC, targets=("buidler",))
    assert "buidler" in err.message
    assert err.hint is not None and "did you mean builder?" in err.hint and "unused" in err.hint


def test_from_stage_and_transitive_needs() -> None:
    graph = plan("FROM alpine AS base\nFROM base AS mid\nFROM mid\nRUN true\n")
    assert graph.stages[1].base.kind is BaseKind.STAGE and graph.stages[1].base.stage_index == 0
    assert graph.stages[2].depends_on[0].via is Via.FROM
    assert all(s.built for s in graph.stages)
    assert graph.order == (0, 1, 2)


def test_self_named_image_is_an_image() -> None:
    # FROM only finds earlier stages: a stage named like its base image uses the image.
    graph = plan("FROM golang AS golang\nRUN go version\n")
    assert graph.stages[0].base.kind is BaseKind.IMAGE


def test_names_are_case_insensitive() -> None:
    graph = plan("FROM a AS STAge0\nFROM b\nCOPY --from=staGE0 /x /x\n", targets=("STAGE0",))
    assert graph.stages[0].name == "stage0"
    graph = plan("FROM a AS STAge0\nFROM b\nCOPY --from=staGE0 /x /x\n")
    assert graph.stages[1].depends_on[0].dependency == 0


def test_copy_from_index_and_image() -> None:
    graph = plan("FROM a\nFROM b\nCOPY --from=0 /x /x\nCOPY --from=busybox:1.36 /bin/sh /sh\n")
    final = graph.stages[1]
    assert final.depends_on[0].dependency == 0
    assert [(u.ref, u.via) for u in final.images] == [("busybox:1.36", Via.COPY_FROM)]
    copy = final.ops[2]
    assert isinstance(copy, CopyOp) and copy.source == ImageRef(ref="busybox:1.36")


def test_mount_from_makes_an_edge_and_has_no_index_form() -> None:
    graph = plan("FROM a AS deps\nFROM b\nRUN --mount=type=bind,from=deps,target=/d true\n")
    assert graph.stages[1].depends_on[0].via is Via.MOUNT_FROM
    # "0" is not an index for --mount from=: it is taken as an image name.
    graph = plan("FROM a\nFROM b\nRUN --mount=from=0,target=/d true\n")
    assert graph.stages[1].depends_on == ()
    assert graph.stages[1].images[0].ref == "0"
    run = graph.stages[1].ops[1]
    assert isinstance(run, ExecOp) and run.mounts[0].source_ref == ImageRef(ref="0")


def test_forward_references_are_errors() -> None:
    err = plan_error("FROM a AS one\nCOPY --from=two /x /x\nFROM b AS two\n")
    assert "needs to be defined before" in err.message
    assert err.location is not None and err.location.line == 2
    err = plan_error("FROM a\nCOPY --from=1 /x /x\nFROM b\n")
    assert "needs to be defined before" in err.message
    err = plan_error("FROM a AS one\nRUN --mount=from=two,target=/x true\nFROM b AS two\n")
    assert "needs to be defined before" in err.message


def test_self_reference_and_bad_index() -> None:
    assert "cannot use itself" in plan_error("FROM a AS one\nCOPY --from=one /x /x\n").message
    err = plan_error("FROM a AS x\nFROM b\nCOPY --from=5 /x /x\n")
    assert "no stage 5" in err.message


def test_unknown_from_that_is_no_image_reference() -> None:
    err = plan_error("FROM a AS builder\nFROM b\nCOPY --from=Bad_Name! /x /x\n")
    assert err.location is not None and err.location.line == 3
    assert err.hint is not None and "builder" in err.hint


def test_unknown_from_that_looks_like_a_typo_warns() -> None:
    graph = plan("FROM a AS builder\nFROM b\nCOPY --from=buidler /x /x\n")
    assert graph.stages[1].images[0].ref == "buidler"
    assert any("did you mean builder?" in w for w in graph.warnings)


def test_duplicate_names_from_uses_last_from_line_uses_nearest() -> None:
    text = "FROM a AS x\nFROM b AS x\nFROM c\nCOPY --from=x / /\nFROM x\n"
    graph = plan(text)
    assert graph.stages[2].depends_on[0].dependency == 1
    assert graph.stages[3].base.stage_index == 1
    assert any("duplicate stage name" in w for w in graph.warnings)


def test_global_args_in_from_and_build_args() -> None:
    text = "ARG IMAGE=debian\nARG TAG=bookworm\nFROM ${IMAGE}:${TAG}-slim\n"
    assert plan(text).stages[0].base.ref == "debian:bookworm-slim"
    graph = plan(text, build_args={"TAG": "trixie", "UNUSED": "1"})
    assert graph.stages[0].base.ref == "debian:trixie-slim"
    assert graph.unused_build_args == ("UNUSED",)


def test_from_sees_only_declared_globals() -> None:
    # A build arg that no ARG declares is not visible to FROM.
    err = plan_error("FROM $IMAGE\n", build_args={"IMAGE": "alpine"})
    assert "should not be blank" in err.message
    assert plan("ARG IMAGE\nFROM $IMAGE\n", build_args={"IMAGE": "alpine"}).stages[0].base.ref == "alpine"


def test_platform_args() -> None:
    text = "FROM --platform=$BUILDPLATFORM alpine AS b\nFROM --platform=${TARGETOS}/${TARGETARCH} alpine\n"
    graph = plan(text, target_platform=Platform(os="linux", architecture="arm64"))
    assert graph.stages[0].platform == "linux/amd64"
    assert graph.stages[1].platform == "linux/arm64"
    values = graph.global_scope.values
    assert values["TARGETPLATFORM"] == "linux/arm64"
    assert values["BUILDARCH"] == "amd64"
    assert values["TARGETSTAGE"] == "default"
    assert plan("FROM a AS x\nFROM b AS y\n", targets=("x",)).global_scope.values["TARGETSTAGE"] == "x"


def test_empty_platform_is_an_error() -> None:
    err = plan_error("ARG P\nFROM --platform=$P alpine\n")
    assert "--platform" in err.message and err.location is not None and err.location.line == 2


def test_unused_stage_is_still_checked() -> None:
    # Expansion errors in a stage nobody needs still fail, as BuildKit's do.
    with pytest.raises(ExpansionError):
        plan("FROM ${X:?unset} AS broken\nFROM alpine\n")


def test_invalid_from_image() -> None:
    err = plan_error("FROM Alpine\n")
    assert "lowercase" in err.message
    err = plan_error("FROM Base\nFROM alpine AS base\n")
    assert err.hint is not None and "defined later" in err.hint
    # A valid name that matches only a later stage is an image, as in BuildKit, with a warning.
    graph = plan("FROM base\nFROM alpine AS base\n")
    assert graph.stages[0].base.kind is BaseKind.IMAGE
    assert any("defined later" in w for w in graph.warnings)


def test_named_contexts_replace_stages_and_images() -> None:
    text = "FROM alpine AS deps\nFROM deps\nCOPY --from=tools / /\n"
    graph = plan(text, named_contexts=frozenset({"deps", "tools"}))
    final = graph.stages[1]
    assert final.base.kind is BaseKind.CONTEXT
    assert final.depends_on == ()
    assert not graph.stages[0].built
    copy = final.ops[1]
    assert isinstance(copy, CopyOp) and copy.source == NamedContextRef(name="tools")


def test_onbuild_triggers_of_a_base_stage() -> None:
    # A trigger runs in the child, so it may use a stage defined after its own stage.
    text = "FROM a AS base\nONBUILD COPY --from=tools /t /t\nFROM b AS tools\nFROM base\n"
    assert {e.dependency for e in plan(text).stages[2].depends_on} == {0, 1}
    # ... but not one defined after the child.
    with pytest.raises(PlanError):
        plan("FROM a AS base\nONBUILD COPY --from=tools /t /t\nFROM base\nFROM b AS tools\n")
    text = (
        "FROM a AS tools\nFROM b AS base\nONBUILD RUN echo hi\nONBUILD COPY --from=tools /t /t\nFROM base\n"
    )
    graph = plan(text)
    child = graph.stages[2]
    assert [type(op).__name__ for op in child.ops] == ["SourceOp", "ExecOp", "CopyOp"]
    assert {e.dependency for e in child.depends_on} == {0, 1}


def test_topological_order_names_every_stage_in_a_cycle() -> None:
    loc = SourceLocation(file="Dockerfile", line=1)
    edges = (
        StageEdge(dependency=1, dependent=2, via=Via.COPY_FROM, location=loc),
        StageEdge(dependency=2, dependent=3, via=Via.COPY_FROM, location=loc),
        StageEdge(dependency=3, dependent=1, via=Via.COPY_FROM, location=loc),
    )
    with pytest.raises(PlanError) as info:
        topological_order(4, edges, ("a", "b", "c", "d"))
    assert "b -> c -> d -> b" in info.value.message
    assert topological_order(3, edges[:1], ("a", "b", "c")) == (0, 1, 2)


@pytest.mark.parametrize(
    "ref",
    [
        "alpine",
        "debian:bookworm-slim",
        "ghcr.io/a/b:v1",
        "localhost:5000/x",
        "x@sha256:" + "a" * 64,
        "a.b/c_d",
    ],
)
def test_valid_image_references(ref: str) -> None:
    assert is_image_reference(ref)


@pytest.mark.parametrize("ref", ["Alpine", "a:b:c", "", "a//b", "-a", "a:", "x/UPPER"])
def test_invalid_image_references(ref: str) -> None:
    assert not is_image_reference(ref)
