"""Drawings of a stage graph: text for people, Graphviz dot and Mermaid, skipped stages greyed.

The drawing model is plain data (``GraphDrawing``), filled by the caller from the planner's
StageGraph, so this module stays independent of the planner.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class DrawnStage:
    """One stage: its label, its base as text, and whether it is built (or why not)."""

    index: int
    name: str  # the name, or stage-N
    base: str  # "image debian:bookworm", "stage builder", "scratch"
    built: bool
    skipped_reason: str | None = None
    target: bool = False


@dataclass(frozen=True, kw_only=True)
class DrawnEdge:
    """``dependent`` uses ``dependency`` through ``instruction`` on ``line``."""

    dependency: int
    dependent: int
    instruction: str  # FROM, COPY --from, RUN --mount from
    line: int


@dataclass(frozen=True, kw_only=True)
class DrawnImage:
    """An external image read by a stage through --from."""

    ref: str
    dependent: int
    instruction: str
    line: int


@dataclass(frozen=True, kw_only=True)
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
