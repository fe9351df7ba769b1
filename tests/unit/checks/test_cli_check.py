"""``forklift check``: options, output formats, exit status, .dockerignore discovery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forklift.cli.main import main

CLASSIC = """\
FROM rust:1.80 as builder
WORKDIR /src
COPY . .
RUN cargo build

FROM fedora:40
RUN dnf install -y openssl-devel
COPY --from=builder /src/target/debug/app /usr/local/bin/app
CMD ["app"]
"""


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
        raise SystemExit(0)
    out = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), out.out, out.err


def test_warnings_exit_zero_with_text_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Dockerfile").write_text(CLASSIC)
    code, out, err = run(["check", str(tmp_path)], capsys)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3
    assert lines[0] == (
        f"{tmp_path / 'Dockerfile'}:1: warning: FromAsCasing: 'as' and 'FROM' keywords' casing do not match "
        "(see docs/checks/FromAsCasing.md)"
    )
    assert "3 warning(s), 0 error(s)" in err


def test_json_output_and_error_exit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dockerfile = tmp_path / "app.Dockerfile"
    dockerfile.write_text("# check=error=true\n" + CLASSIC)
    code, out, _ = run(["check", "-f", str(dockerfile), "--format", "json", str(tmp_path)], capsys)
    assert code == 1
    findings = json.loads(out)
    assert [(f["rule"], f["line"], f["severity"]) for f in findings] == [
        ("FromAsCasing", 2, "error"),
        ("ToolchainInFinalStage", 8, "error"),
        ("DebugArtifactInFinalStage", 9, "error"),
    ]
    assert findings[0]["doc"] == "docs/checks/FromAsCasing.md"


def test_target_and_build_args_reach_the_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE\nFROM ${BASE} AS builder\nRUN make\n\nFROM builder AS test\nRUN make test\n\n"
        "FROM alpine:3.20\nCOPY --from=builder /out /out\n"
    )
    _, out, _ = run(["check", "--format", "json", str(tmp_path)], capsys)
    assert {f["rule"] for f in json.loads(out)} == {"InvalidDefaultArgInFrom", "StageOnlyInSkippedTarget"}
    _, out, _ = run(["check", "--format", "json", "--target", "test", str(tmp_path)], capsys)
    assert {f["rule"] for f in json.loads(out)} == {"InvalidDefaultArgInFrom"}
    args = ["check", "--build-arg", "BUILDKIT_DOCKERFILE_CHECK=skip=InvalidDefaultArgInFrom", str(tmp_path)]
    _, out, _ = run(args, capsys)
    assert "InvalidDefaultArgInFrom" not in out


def test_dockerignore_of_the_context_is_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Dockerfile").write_text("FROM alpine:3.20\nCOPY secret.env /app/\n")
    code, out, _ = run(["check", str(tmp_path)], capsys)
    assert out == ""
    (tmp_path / ".dockerignore").write_text("*.env\n")
    code, out, _ = run(["check", str(tmp_path)], capsys)
    assert code == 0
    assert "CopyIgnoredFile" in out and ":2:" in out


def test_missing_dockerfile_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["check", str(tmp_path)], capsys)
    assert code == 1
    assert err.startswith("error: cannot read Dockerfile")
    assert "Traceback" not in err


def test_unknown_target_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Dockerfile").write_text("FROM alpine:3.20 AS app\n")
    code, _, err = run(["check", "--target", "ap", str(tmp_path)], capsys)
    assert code == 1
    assert "target stage 'ap' could not be found" in err


def test_dockerfile_from_standard_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("FROM alpine:3.20\nMAINTAINER me\n"))
    code, out, _ = run(["check", "-f", "-", "--format", "json", str(tmp_path)], capsys)
    assert code == 0
    assert [(f["rule"], f["file"], f["line"]) for f in json.loads(out)] == [
        ("MaintainerDeprecated", "Dockerfile", 2)
    ]
