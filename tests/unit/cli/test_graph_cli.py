"""``forklift graph``: formats, targets, build args, and bad input as exit status 1 with a location."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from forklift.cli.main import main

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "rust-service"

MULTI = """\
ARG BASE=alpine
FROM ${BASE} AS deps
RUN echo deps
FROM busybox AS unused
RUN exit 1
FROM deps AS builder
RUN --mount=type=bind,from=deps,target=/d true
FROM scratch
COPY --from=builder /out /out
COPY --from=busybox:latest /bin/busybox /bin/
"""


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def context(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text(MULTI)
    return tmp_path


def test_json_lists_every_stage_with_built_and_reason(
    context: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["graph", "--format", "json", str(context)], capsys)
    assert code == 0
    data = json.loads(out)
    stages = data["stages"]
    assert [(s["index"], s["name"], s["built"]) for s in stages] == [
        (0, "deps", True),
        (1, "unused", False),
        (2, "builder", True),
        (3, None, True),
    ]
    assert stages[0]["base"] == {"kind": "image", "ref": "alpine", "text": "${BASE}"}
    assert stages[1]["skipped_reason"] == "not needed by target 'stage-3'"
    assert stages[2]["base"]["kind"] == "stage"
    assert stages[2]["depends_on"] == [
        {"stage": "deps", "index": 0, "instruction": "FROM", "line": 6},
        {"stage": "deps", "index": 0, "instruction": "RUN --mount from", "line": 7},
    ]
    assert stages[3]["depends_on"] == [
        {"stage": "builder", "index": 2, "instruction": "COPY --from", "line": 9}
    ]
    assert stages[3]["images"] == [{"ref": "busybox:latest", "instruction": "COPY --from", "line": 10}]
    assert all(s["skipped_reason"] is None for s in stages if s["built"])


def test_targets_and_build_args(context: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "graph",
        "--format",
        "json",
        "--target",
        "deps",
        "--target",
        "UNUSED",
        "--build-arg",
        "BASE=debian",
    ]
    code, out, _ = run([*argv, str(context)], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["targets"] == ["deps", "unused"]
    assert [s["built"] for s in data["stages"]] == [True, True, False, False]
    assert data["stages"][2]["skipped_reason"] == "not needed by targets 'deps' and 'unused'"
    assert data["stages"][0]["base"]["ref"] == "debian"


def test_text_dot_mermaid(context: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["graph", str(context)], capsys)
    assert code == 0
    assert "[skip ] 1: unused" in out and "not needed by target 'stage-3'" in out
    assert "3 of 4 stages will be built" in out
    code, out, _ = run(["graph", "--format", "dot", str(context)], capsys)
    assert code == 0
    assert out.startswith("digraph stages {")
    assert 's1 [label="1: unused\\nFROM image busybox", color="grey"' in out
    assert 's2 -> s3 [label="COPY --from (line 9)"];' in out
    code, out, _ = run(["graph", "--format", "mermaid", str(context)], capsys)
    assert code == 0
    assert out.startswith("flowchart LR")
    assert "class s1 skipped" in out


def test_file_option_and_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "build.Dockerfile"
    other.write_text("FROM alpine AS only\n")
    code, out, _ = run(["graph", "-f", str(other), "--format", "json", str(tmp_path)], capsys)
    assert code == 0 and json.loads(out)["stages"][0]["name"] == "only"
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("FROM busybox\n"))
    code, out, _ = run(["graph", "-f", "-", "--format", "json"], capsys)
    assert code == 0 and json.loads(out)["file"] == "<stdin>"


@pytest.mark.parametrize(
    ("dockerfile", "argv", "needles"),
    [
        (
            "FROM alpine\nCOPPY a b\n",
            [],
            ["Dockerfile:2:1", "unknown instruction: COPPY", "did you mean COPY?"],
        ),
        ("FROM alpine\nCOPY --chmod=99999 a b\n", [], [":2:6", "--chmod", "COPY --chmod=99999 a b", "^"]),
        ("FROM alpine AS a\n", ["--target", "b"], ["target stage 'b' could not be found", "stages: a"]),
        ("FROM alpine\nCOPY --from=later x y\nFROM alpine AS later\n", [], [":2:6", "defined before"]),
    ],
)
def test_bad_input_exits_1_with_a_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dockerfile: str, argv: list[str], needles: list[str]
) -> None:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    code, out, err = run(["graph", *argv, str(tmp_path)], capsys)
    assert code == 1
    assert out == ""
    for needle in needles:
        assert needle in err
    assert "Traceback" not in err


def test_missing_dockerfile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["graph", str(tmp_path)], capsys)
    assert code == 1 and "cannot read the Dockerfile" in err


def test_the_example_in_a_real_process() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "forklift.cli.main",
            "graph",
            "--format",
            "json",
            "--target",
            "builder",
            str(EXAMPLE),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    stages = json.loads(result.stdout)["stages"]
    assert [(s["name"], s["built"]) for s in stages] == [("builder", True), ("runtime", False)]
    assert stages[1]["skipped_reason"] == "not needed by target 'builder'"
    assert stages[1]["depends_on"][0]["stage"] == "builder"
