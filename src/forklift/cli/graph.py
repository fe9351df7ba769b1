"""``forklift graph``: parse and plan a Dockerfile without building, and show the stage graph."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from forklift.cli.build_run import pairs
from forklift.dockerfile.instructions import parse_dockerfile
from forklift.dockerfile.syntax import parse
from forklift.errors import ForkliftError
from forklift.oci.model import Platform
from forklift.plan.graph import PlanOptions, StageGraph, plan_build, stage_graph_json
from forklift.report.graphdraw import (
    DrawnEdge,
    DrawnImage,
    DrawnStage,
    GraphDrawing,
    render_dot,
    render_mermaid,
    render_svg,
    render_text,
)


def read_dockerfile(file: str | None, context: Path) -> tuple[str, str]:
    """``(display name, text)`` of the Dockerfile: ``-f FILE``, ``-f -`` (stdin), or CONTEXT/Dockerfile."""
    if file == "-":
        return "<stdin>", sys.stdin.read()
    path = Path(file) if file is not None else context / "Dockerfile"
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ForkliftError(
            f"cannot read the Dockerfile {str(path)!r}: {err.strerror or err}",
            hint="name it with -f FILE, or give the build context that holds it",
        ) from None
    try:
        return str(path), data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ForkliftError(f"the Dockerfile {str(path)!r} is not UTF-8 text ({err.reason})") from None


def drawing_of(graph: StageGraph) -> GraphDrawing:
    """The planner's graph as the drawing model of forklift.report.graphdraw."""
    stages = tuple(
        DrawnStage(
            index=st.index,
            name=st.display_name,
            base=st.base.ref if st.base.kind.value == "scratch" else f"{st.base.kind.value} {st.base.ref}",
            built=st.built,
            skipped_reason=st.skipped_reason,
            target=st.index in graph.targets,
        )
        for st in graph.stages
    )
    edges = tuple(
        DrawnEdge(dependency=e.dependency, dependent=e.dependent, instruction=e.via.value, line=e.line)
        for e in graph.edges
    )
    images = tuple(
        DrawnImage(ref=u.ref, dependent=u.stage, instruction=u.via.value, line=u.location.line)
        for u in graph.images
    )
    return GraphDrawing(stages=stages, edges=edges, images=images)


@click.command("graph")
@click.option(
    "-f", "--file", "file", default=None, help="The Dockerfile (default: CONTEXT/Dockerfile; - for stdin)."
)
@click.option("--target", "targets", multiple=True, help="Stage to build; repeat for several targets.")
@click.option("--build-arg", "build_args", multiple=True, metavar="K=V", help="Set a build-time ARG.")
@click.option(
    "--build-context",
    "build_contexts",
    multiple=True,
    metavar="NAME=SOURCE",
    help="A named context that replaces the stage or image NAME.",
)
@click.option("--platform", default=None, help="Target platform (default: this machine), e.g. linux/arm64.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "dot", "mermaid", "svg"]),
    default="text",
    show_default=True,
    help="Output format.",
)
@click.argument("context", default=".", type=click.Path(file_okay=False, path_type=Path))
def graph_command(
    file: str | None,
    targets: tuple[str, ...],
    build_args: tuple[str, ...],
    build_contexts: tuple[str, ...],
    platform: str | None,
    fmt: str,
    context: Path,
) -> None:
    """Parse and plan a Dockerfile without building; show its stages and what the targets need."""
    name, text = read_dockerfile(file, context)
    parsed = parse(text, file=name)
    dockerfile = parse_dockerfile(parsed)
    contexts = frozenset(item.partition("=")[0].lower() for item in build_contexts if item.partition("=")[0])
    options = PlanOptions(
        targets=targets,
        build_args=pairs(build_args, "--build-arg", from_env=True),
        target_platform=Platform.parse(platform) if platform else None,
        named_contexts=contexts,
    )
    graph = plan_build(dockerfile, options)
    if fmt == "json":
        click.echo(json.dumps(stage_graph_json(graph), indent=2))
        return
    for warning in parsed.warnings:
        click.echo(f"{name}:{warning.line}: warning: {warning.message}", err=True)
    for message in graph.warnings:
        click.echo(f"warning: {message}", err=True)
    if graph.unused_build_args:
        click.echo(
            "warning: build-arg not consumed by the Dockerfile: " + ", ".join(graph.unused_build_args),
            err=True,
        )
    drawing = drawing_of(graph)
    render = {"text": render_text, "dot": render_dot, "mermaid": render_mermaid, "svg": render_svg}[fmt]
    click.echo(render(drawing), nl=False)
