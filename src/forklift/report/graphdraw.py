"""Drawings of a stage graph: text for people, Graphviz dot and Mermaid, skipped stages greyed.

The drawing model is plain data (``GraphDrawing``), filled by the caller from the planner's
StageGraph, so this module stays independent of the planner.
"""

from __future__ import annotations

from forklift.records import record


@record(kw_only=True)
class DrawnStage:
    """One stage: its label, its base as text, and whether it is built (or why not)."""

    index: int
    name: str  # the name, or stage-N
    base: str  # "image debian:bookworm", "stage builder", "scratch"
    built: bool
    skipped_reason: str | None = None
    target: bool = False


@record(kw_only=True)
class DrawnEdge:
    """``dependent`` uses ``dependency`` through ``instruction`` on ``line``."""

    dependency: int
    dependent: int
    instruction: str  # FROM, COPY --from, RUN --mount from
    line: int


@record(kw_only=True)
class DrawnImage:
    """An external image read by a stage through --from."""

    ref: str
    dependent: int
    instruction: str
    line: int


@record(kw_only=True)
class GraphDrawing:
    """Everything a drawing shows."""

    stages: tuple[DrawnStage, ...]
    edges: tuple[DrawnEdge, ...]
    images: tuple[DrawnImage, ...] = ()


def render_text(drawing: GraphDrawing) -> str:
    """A listing for people: each stage with its base, what it uses, and whether it is built."""
    lines: list[str] = []
    by_index = {s.index: s for s in drawing.stages}
    for st in drawing.stages:
        mark = "build" if st.built else "skip "
        target = "  (target)" if st.target else ""
        lines.append(f"[{mark}] {st.index}: {st.name}  FROM {st.base}{target}")
        for e in drawing.edges:
            if e.dependent == st.index:
                lines.append(
                    f"          <- {by_index[e.dependency].name} via {e.instruction} (line {e.line})"
                )
        for img in drawing.images:
            if img.dependent == st.index:
                lines.append(f"          <- image {img.ref} via {img.instruction} (line {img.line})")
        if not st.built and st.skipped_reason:
            lines.append(f"          skipped: {st.skipped_reason}")
    built = sum(1 for s in drawing.stages if s.built)
    lines.append(f"{built} of {len(drawing.stages)} stages will be built")
    return "\n".join(lines) + "\n"


def _dot_quote(*lines: str) -> str:
    """A quoted dot string; several lines are joined with dot's own line break."""
    escaped = [ln.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") for ln in lines]
    return '"' + "\\n".join(escaped) + '"'


def render_dot(drawing: GraphDrawing) -> str:
    """Graphviz dot: stages as boxes (skipped ones grey and dashed), images as ellipses."""
    out = ["digraph stages {", "  rankdir=LR;", '  node [shape=box, fontname="sans-serif"];']
    for st in drawing.stages:
        attrs = [f"label={_dot_quote(f'{st.index}: {st.name}', f'FROM {st.base}')}"]
        if st.built:
            attrs.append("penwidth=2" if st.target else "penwidth=1")
        else:
            attrs += ['color="grey"', 'fontcolor="grey"', 'style="dashed"']
            if st.skipped_reason:
                attrs.append(f"tooltip={_dot_quote(st.skipped_reason)}")
        out.append(f"  s{st.index} [{', '.join(attrs)}];")
    images = sorted({img.ref for img in drawing.images})
    for n, ref in enumerate(images):
        out.append(f"  i{n} [shape=ellipse, label={_dot_quote(ref)}];")
    built = {s.index: s.built for s in drawing.stages}
    for e in drawing.edges:
        grey = "" if built.get(e.dependent, True) else ', color="grey", fontcolor="grey"'
        label = _dot_quote(f"{e.instruction} (line {e.line})")
        out.append(f"  s{e.dependency} -> s{e.dependent} [label={label}{grey}];")
    for img in drawing.images:
        grey = "" if built.get(img.dependent, True) else ', color="grey", fontcolor="grey"'
        label = _dot_quote(f"{img.instruction} (line {img.line})")
        out.append(f"  i{images.index(img.ref)} -> s{img.dependent} [label={label}{grey}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _mermaid_text(text: str) -> str:
    # Mermaid labels sit in double quotes; it understands HTML entities for the awkward characters.
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def render_mermaid(drawing: GraphDrawing) -> str:
    """A Mermaid flowchart; skipped stages use the ``skipped`` class (grey, dashed)."""
    out = ["flowchart LR"]
    for st in drawing.stages:
        head, base = _mermaid_text(f"{st.index}: {st.name}"), _mermaid_text(f"FROM {st.base}")
        out.append(f'  s{st.index}["{head}<br/>{base}"]')
    images = sorted({img.ref for img in drawing.images})
    for n, ref in enumerate(images):
        out.append(f'  i{n}(["{_mermaid_text(ref)}"])')
    for e in drawing.edges:
        label = _mermaid_text(f"{e.instruction} (line {e.line})")
        out.append(f'  s{e.dependency} -->|"{label}"| s{e.dependent}')
    for img in drawing.images:
        label = _mermaid_text(f"{img.instruction} (line {img.line})")
        out.append(f'  i{images.index(img.ref)} -->|"{label}"| s{img.dependent}')
    out.append("  classDef skipped fill:#eeeeee,stroke:#999999,color:#999999,stroke-dasharray: 5 5")
    skipped = [f"s{s.index}" for s in drawing.stages if not s.built]
    if skipped:
        out.append(f"  class {','.join(skipped)} skipped")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# SVG: a layered drawing with no external tool (stages in columns by depth, images on the left)

_BOX_W, _BOX_H, _GAP_X, _GAP_Y, _MARGIN = 230, 54, 90, 26, 20


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _columns(drawing: GraphDrawing) -> dict[str, tuple[int, int]]:
    """Node id -> (column, row): a stage sits one column right of its deepest dependency."""
    depth: dict[int, int] = {}
    for st in sorted(drawing.stages, key=lambda s: s.index):
        deps = [depth.get(e.dependency, 0) + 1 for e in drawing.edges if e.dependent == st.index]
        depth[st.index] = max(deps, default=0)
    shift = 1 if drawing.images else 0
    rows: dict[int, int] = {}
    place: dict[str, tuple[int, int]] = {}
    for ref in sorted({img.ref for img in drawing.images}):
        place[f"i:{ref}"] = (0, rows.get(0, 0))
        rows[0] = rows.get(0, 0) + 1
    for st in sorted(drawing.stages, key=lambda s: s.index):
        column = depth[st.index] + shift
        place[f"s:{st.index}"] = (column, rows.get(column, 0))
        rows[column] = rows.get(column, 0) + 1
    return place


def render_svg(drawing: GraphDrawing) -> str:
    """A standalone SVG picture of the graph; skipped stages are grey and dashed."""
    place = _columns(drawing)

    def corner(node: str) -> tuple[int, int]:
        column, row = place[node]
        return _MARGIN + column * (_BOX_W + _GAP_X), _MARGIN + row * (_BOX_H + _GAP_Y)

    width = _MARGIN * 2 + (max((c for c, _ in place.values()), default=0) + 1) * (_BOX_W + _GAP_X) - _GAP_X
    height = _MARGIN * 2 + (max((r for _, r in place.values()), default=0) + 1) * (_BOX_H + _GAP_Y) - _GAP_Y
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#555"/></marker></defs>',
    ]
    built = {s.index: s.built for s in drawing.stages}

    def arrow(source: str, target: str, label: str, live: bool) -> None:
        sx, sy = corner(source)
        tx, ty = corner(target)
        x1, y1, x2, y2 = sx + _BOX_W, sy + _BOX_H // 2, tx, ty + _BOX_H // 2
        colour = "#555" if live else "#bbb"
        out.append(
            f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{colour}" marker-end="url(#arrow)"/>'
        )
        out.append(
            f'<text x="{(x1 + x2) // 2}" y="{(y1 + y2) // 2 - 4}" text-anchor="middle" font-size="10" '
            f'fill="{colour}">{_xml(label)}</text>'
        )

    # One arrow per pair of nodes; several instructions share it and its label.
    grouped: dict[tuple[str, str], list[str]] = {}
    for e in drawing.edges:
        grouped.setdefault((f"s:{e.dependency}", f"s:{e.dependent}"), []).append(f"{e.instruction} :{e.line}")
    for img in drawing.images:
        grouped.setdefault((f"i:{img.ref}", f"s:{img.dependent}"), []).append(
            f"{img.instruction} :{img.line}"
        )
    for (source, target), labels in grouped.items():
        arrow(source, target, ", ".join(labels), built.get(int(target[2:]), True))
    for ref in sorted({img.ref for img in drawing.images}):
        x, y = corner(f"i:{ref}")
        out.append(
            f'<rect class="image" x="{x}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="27" '
            'fill="#eef4ff" stroke="#6a8cc7"/>'
        )
        out.append(f'<text x="{x + _BOX_W // 2}" y="{y + 31}" text-anchor="middle">{_xml(ref)}</text>')
    for st in drawing.stages:
        x, y = corner(f"s:{st.index}")
        if st.built:
            style = f'fill="#ffffff" stroke="#222" stroke-width="{2 if st.target else 1}"'
            ink = "#222"
        else:
            style = 'fill="#f2f2f2" stroke="#aaa" stroke-dasharray="5 4"'
            ink = "#999"
        klass = "stage built" if st.built else "stage skipped"
        out.append(f'<g class="{klass}">')
        if st.skipped_reason:
            out.append(f"<title>{_xml(st.skipped_reason)}</title>")
        out.append(f'<rect x="{x}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="4" {style}/>')
        head = _xml(f"{st.index}: {st.name}")
        out.append(f'<text x="{x + 10}" y="{y + 21}" fill="{ink}" font-weight="bold">{head}</text>')
        out.append(f'<text x="{x + 10}" y="{y + 40}" fill="{ink}">{_xml("FROM " + st.base)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
