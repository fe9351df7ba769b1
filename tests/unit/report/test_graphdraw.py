"""Stage graph drawings: every stage and edge drawn, skipped stages greyed, output well-formed."""

from __future__ import annotations

import xml.etree.ElementTree as ET

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

DRAWING = GraphDrawing(
    stages=(
        DrawnStage(index=0, name="builder", base="image debian:bookworm", built=True),
        DrawnStage(
            index=1,
            name="docs",
            base='image "odd"<name>',
            built=False,
            skipped_reason="not needed by target 'x'",
        ),
        DrawnStage(index=2, name="x", base="scratch", built=True, target=True),
    ),
    edges=(
        DrawnEdge(dependency=0, dependent=2, instruction="COPY --from", line=7),
        DrawnEdge(dependency=0, dependent=2, instruction="COPY --from", line=8),
        DrawnEdge(dependency=0, dependent=1, instruction="FROM", line=4),
    ),
    images=(DrawnImage(ref="busybox:latest", dependent=2, instruction="COPY --from", line=9),),
)


def test_text() -> None:
    text = render_text(DRAWING)
    assert "[build] 0: builder  FROM image debian:bookworm" in text
    assert "[skip ] 1: docs" in text and "skipped: not needed by target 'x'" in text
    assert "(target)" in text
    assert "<- builder via COPY --from (line 7)" in text
    assert "<- image busybox:latest via COPY --from (line 9)" in text
    assert text.endswith("2 of 3 stages will be built\n")


def test_dot_greys_skipped_stages_and_escapes_quotes() -> None:
    dot = render_dot(DRAWING)
    assert dot.startswith("digraph stages {") and dot.rstrip().endswith("}")
    assert 's1 [label="1: docs\\nFROM image \\"odd\\"<name>", color="grey"' in dot
    assert 'style="dashed"' in dot.split("s1 [", 1)[1].split("\n", 1)[0]
    assert 's0 -> s1 [label="FROM (line 4)", color="grey", fontcolor="grey"];' in dot
    assert 's0 -> s2 [label="COPY --from (line 7)"];' in dot
    assert 'i0 -> s2 [label="COPY --from (line 9)"];' in dot


def test_mermaid_marks_skipped_stages() -> None:
    text = render_mermaid(DRAWING)
    assert text.startswith("flowchart LR\n")
    assert 's1["1: docs<br/>FROM image &quot;odd&quot;&lt;name&gt;"]' in text
    assert '  s0 -->|"COPY --from (line 7)"| s2' in text
    assert "  class s1 skipped" in text


def test_svg_is_well_formed_with_skipped_stages_dashed() -> None:
    root = ET.fromstring(render_svg(DRAWING))
    ns = "{http://www.w3.org/2000/svg}"
    groups = root.findall(f"{ns}g")
    assert [g.get("class") for g in groups] == ["stage built", "stage skipped", "stage built"]
    skipped_rect = groups[1].find(f"{ns}rect")
    assert skipped_rect is not None and skipped_rect.get("stroke-dasharray")
    assert groups[1].findtext(f"{ns}title") == "not needed by target 'x'"
    # Two COPY --from lines between the same stages share one arrow.
    labels = [t.text for t in root.findall(f"{ns}text")]
    assert "COPY --from :7, COPY --from :8" in labels
    assert len(root.findall(f"{ns}line")) == 3
    # The target sits to the right of what it depends on.
    x = {g.findtext(f"{ns}text"): float(g.find(f"{ns}rect").get("x", "0")) for g in groups}  # type: ignore[union-attr]
    assert x["2: x"] > x["0: builder"]
