"""``forklift check``: run the build checks on a Dockerfile without building anything."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from forklift.cli.build_run import pairs
from forklift.dockerfile.checks import CheckOptions, CheckReport, run_checks
from forklift.dockerfile.syntax import parse
from forklift.errors import ForkliftError
from forklift.execute.context import read_dockerignore


def render_report(report: CheckReport, fmt: str) -> str:
    """The report as text lines or as a JSON list of findings."""
    if fmt == "json":
        return json.dumps([f.to_json() for f in report.findings], indent=2)
    return "\n".join(f.render() for f in report.findings)


def emit_report(report: CheckReport, fmt: str = "text") -> int:
    """Print the findings (stdout) and, for text, a summary (stderr); return the exit status.

    The status is 1 when any finding is an error, else 0. ``forklift build --check`` can reuse this.
    """
    output = render_report(report, fmt)
    if output:
        click.echo(output)
    if fmt == "text":
        errors = sum(1 for f in report.findings if f.severity == "error")
        warnings = len(report.findings) - errors
        click.echo(f"{warnings} warning(s), {errors} error(s)", err=True)
    return 1 if report.failed else 0


@click.command("check")
@click.option(
    "-f",
    "--file",
    "dockerfile",
    default=None,
    help="The Dockerfile (default CONTEXT/Dockerfile; '-' reads standard input).",
)
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE", help="A build argument.")
@click.option("--target", "targets", multiple=True, metavar="STAGE", help="The stage(s) that would be built.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format.",
)
@click.argument("context", default=".", type=click.Path(file_okay=False, path_type=Path))
def check_command(
    dockerfile: str | None, build_args: tuple[str, ...], targets: tuple[str, ...], fmt: str, context: Path
) -> None:
    """Run the build checks on a Dockerfile (no build, no network).

    Exit status 0 when there are only warnings, 1 when any finding is an error
    (``# check=error=true``). Rules are documented in docs/checks/<Rule>.md.
    """
    if dockerfile == "-":
        text, name, path = sys.stdin.read(), "Dockerfile", None
    else:
        path = Path(dockerfile) if dockerfile else context / "Dockerfile"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ForkliftError(f"cannot read Dockerfile {path}: {err.strerror or err}") from err
        except UnicodeDecodeError as err:
            raise ForkliftError(f"Dockerfile {path} is not UTF-8 text") from err
        name = str(path)
    parsed = parse(text, file=name)
    options = CheckOptions(
        build_args=pairs(build_args, "--build-arg", from_env=True),
        targets=targets,
        dockerignore=read_dockerignore(context, path),
    )
    report = run_checks(parsed, options)
    status = emit_report(report, fmt)
    if status:
        # SystemExit rather than click's Exit: with standalone_mode=False click would turn Exit into
        # a return value, which ``python -m forklift.cli.main`` drops.
        sys.exit(status)
