"""The forklift command itself: version, help, the global --root option, unknown commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from forklift import __version__
from forklift.cli.entry import default_root
from forklift.cli.main import COMMANDS, cli


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_root_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FORKLIFT_ROOT", str(tmp_path / "r"))
    assert default_root() == tmp_path / "r"


def test_root_default_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FORKLIFT_ROOT", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_root() == tmp_path / "forklift"


def test_root_option_reaches_commands(tmp_path: Path) -> None:
    seen: list[Path] = []

    @cli.command("probe-root")
    @click.pass_obj
    def probe(obj: object) -> None:
        seen.append(obj.root)  # type: ignore[attr-defined]

    try:
        group_commands = cli.commands
        result = CliRunner().invoke(cli, ["--root", str(tmp_path), "probe-root"])
    finally:
        group_commands.pop("probe-root", None)
    assert result.exit_code == 0, result.output
    assert seen == [tmp_path]


def test_unknown_command_suggests_the_closest() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "forklift.cli.main", "biuld"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "did you mean 'build'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_relative_root_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Path] = []

    @cli.command("probe-abs-root")
    @click.pass_obj
    def probe(obj: object) -> None:
        seen.append(obj.root)  # type: ignore[attr-defined]

    monkeypatch.chdir(tmp_path)
    try:
        result = CliRunner().invoke(cli, ["--root", "store", "probe-abs-root"])
    finally:
        cli.commands.pop("probe-abs-root", None)
    assert result.exit_code == 0, result.output
    assert seen == [tmp_path / "store"]
