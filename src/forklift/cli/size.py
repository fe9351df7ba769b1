"""``forklift size NAME``: where an image's bytes are, per layer, per file and per build stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from forklift.cli.images import _find
from forklift.errors import ForkliftError
from forklift.oci.model import Platform
from forklift.oci.registry.reference import familiar_name
from forklift.oci.store import Store
from forklift.report.size import DEFAULT_TOP_FILES, analyze_image, render_text, size_json
from forklift.report.sizehtml import render_html


@click.command("size")
@click.argument("name")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "html"]),
    default="text",
    show_default=True,
    help="Output format (html: a standalone page with bars per stage and per layer).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to FILE instead of standard output.",
)
@click.option(
    "--top",
    type=click.IntRange(0, 1000),
    default=DEFAULT_TOP_FILES,
    show_default=True,
    help="How many of each layer's largest files to list.",
)
@click.option(
    "--platform", default=None, help="For a multi-platform image: which one (default: this machine)."
)
@click.pass_obj
def size_command(obj: Any, name: str, fmt: str, output: Path | None, top: int, platform: str | None) -> None:
    """Explain the size of image NAME: compressed and uncompressed, per layer with the step that made
    it, the largest files of each layer, and for images forklift built what each stage weighed."""
    root: Path = obj.root
    store = Store(root)
    canonical, img = _find(store, name, platform=Platform.parse(platform) if platform else None)
    shown = familiar_name(canonical) if canonical is not None else name
    size = analyze_image(store, img, name=shown, top=top)
    if fmt == "json":
        text = json.dumps(size_json(size), indent=2) + "\n"
    elif fmt == "html":
        text = render_html(size)
    else:
        text = render_text(size)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as err:
        raise ForkliftError(f"cannot write {output}: {err.strerror or err}") from None
