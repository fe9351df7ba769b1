"""``forklift size --format html``: the size breakdown as one self-contained page.

Per stage bars (for images forklift built: what each builder weighed against the final image), a
per layer table with the step that made each layer and a bar of its share, and each layer's largest
files. No external assets (inline CSS, no scripts, no fonts to fetch), and the markup is well-formed
XML as well as HTML, so tools can parse it.
"""

from __future__ import annotations

from html import escape

from forklift.report.size import BuildRecord, ImageSize, human_bytes, summarize

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
  max-width: 70em; padding: 0 1em; color: #1f2328; background: #fff; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; word-break: break-all; }
h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.92em; }
.meta { color: #57606a; }
.totals { display: flex; gap: 1em; flex-wrap: wrap; margin: 1em 0; }
.total { border: 1px solid #d0d7de; border-radius: 6px; padding: 0.6em 1em; min-width: 10em; }
.total .value { font-size: 1.6em; font-weight: 600; }
.total .label { color: #57606a; }
.summary { background: #f6f8fa; border-left: 4px solid #2da44e; padding: 0.6em 1em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.3em 0.6em; border-bottom: 1px solid #eaeef2; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.bar { width: 30%; }
.track { background: #eaeef2; border-radius: 3px; height: 0.9em; margin-top: 0.25em; }
.fill { background: #0969da; border-radius: 3px; height: 100%; }
.stage-final .fill { background: #2da44e; }
.stage-left .fill { background: #bf8700; }
.stage-skipped { color: #8c959f; }
.step { word-break: break-all; }
.files td { border: none; padding: 0.1em 0.6em; }
details { margin: 0.4em 0; }
summary { cursor: pointer; }
.note { color: #57606a; font-size: 0.9em; }
.stack { display: flex; height: 1.6em; border-radius: 4px; overflow: hidden; margin: 1em 0 0.3em; }
.stack div { height: 100%; min-width: 2px; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; border-radius: 2px; margin-right: 0.4em; }
"""

# Layer colours for the composition bar and the table swatches (cycled).
_PALETTE = ("#0969da", "#bf8700", "#8250df", "#1a7f37", "#cf222e", "#0598bc", "#953800", "#6e7781")


def _bar(part: int, whole: int) -> str:
    percent = 0.0 if whole <= 0 else max(0.0, min(100.0, 100.0 * part / whole))
    return f'<div class="track"><div class="fill" style="width: {percent:.1f}%"></div></div>'


def _stage_rows(record: BuildRecord) -> list[str]:
    stages = record.stages
    heaviest = max((s.size for s in stages if s.built), default=0)
    css_of = {
        "not built": "stage-skipped",
        "final image": "stage-final",
        "in the final image": "stage-final",
        "left out": "stage-left",
    }
    rows: list[str] = []
    for s in sorted(stages, key=lambda st: st.index):
        role = record.role(s)
        compressed = "" if s.compressed_bytes is None else human_bytes(s.compressed_bytes)
        rows.append(
            f'<tr class="{css_of.get(role, "")}"><td class="num">{s.index}</td>'
            f"<td><code>{escape(s.name)}</code></td>"
            f"<td>{role}</td>"
            f'<td class="num">{"" if s.layers is None else s.layers}</td>'
            f'<td class="num">{human_bytes(s.size) if s.built else ""}</td>'
            f'<td class="num">{compressed}</td>'
            f'<td class="bar">{_bar(s.size, heaviest) if s.built else ""}</td></tr>'
        )
    return rows


def render_html(size: ImageSize, *, title: str | None = None) -> str:
    """The size breakdown of ``size`` as a standalone HTML page (UTF-8 text)."""
    heading = title or size.name
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8"/>',
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>',
        f"<title>{escape(heading)}: image size</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{escape(heading)}</h1>",
        f'<p class="meta mono">digest {escape(size.digest)}<br/>ID {escape(size.image_id)}</p>',
        '<div class="totals">',
        _total(human_bytes(size.uncompressed), "uncompressed"),
    ]
    if size.compressed is not None:
        label = "compressed (gzip estimate)" if size.compressed_estimated else "compressed"
        parts.append(_total(human_bytes(size.compressed), label))
    parts.append(_total(str(len(size.layers)), "layer" if len(size.layers) == 1 else "layers"))
    if size.empty_steps:
        parts.append(_total(str(size.empty_steps), "steps without a layer"))
    parts.append("</div>")
    if size.layers and size.uncompressed > 0:
        parts.append('<div class="stack" role="img" aria-label="the image by layer">')
        for layer in size.layers:
            share = 100.0 * layer.size / size.uncompressed
            tip = f"layer {layer.index}, {human_bytes(layer.size)}: {layer.step or '(no history)'}"
            parts.append(
                f'<div style="width: {share:.2f}%; background: {_colour(layer.index)}" '
                f'title="{escape(tip)}"></div>'
            )
        parts.append("</div>")

    record = size.build
    if record is not None and record.stages:
        parts += [
            f'<p class="summary">{escape(summarize(record, size))}</p>',
            "<h2>Stages</h2>",
            '<p class="note">What each stage of the build weighed (its whole image, base included). '
            "Only the final stage ships; the others stayed behind in the build.</p>",
            "<table>",
            "<thead><tr><th>#</th><th>stage</th><th>role</th><th>layers</th><th>size</th>"
            "<th>compressed</th><th></th></tr></thead>",
            "<tbody>",
            *_stage_rows(record),
            "</tbody>",
            "</table>",
        ]

    parts.append("<h2>Layers</h2>")
    if not size.layers:
        parts.append('<p class="note">This image has no layers.</p>')
    else:
        parts += [
            "<table>",
            "<thead><tr><th>#</th><th>size</th><th>compressed</th><th>share</th>"
            "<th>created by</th></tr></thead>",
            "<tbody>",
        ]
        whole = max(size.uncompressed, 1)
        for layer in size.layers:
            compressed = "" if layer.compressed is None else human_bytes(layer.compressed)
            if layer.compressed_estimated:
                compressed += "*"
            step = layer.step or "(no history)"
            parts.append(
                f'<tr><td class="num"><span class="swatch" style="background: {_colour(layer.index)}"></span>'
                f'{layer.index}</td><td class="num">{human_bytes(layer.size)}</td>'
                f'<td class="num">{compressed}</td><td class="bar">{_bar(layer.size, whole)}</td>'
                f'<td class="step"><code title="{escape(layer.created_by)}">{escape(step)}</code></td></tr>'
            )
        parts += ["</tbody>", "</table>"]
        if size.compressed_estimated:
            parts.append(
                '<p class="note">* gzip estimate: forklift keeps the layers it builds uncompressed; '
                "an export or a push compresses them.</p>"
            )

    listed = [layer for layer in size.layers if layer.largest or layer.whiteouts]
    if listed:
        parts.append("<h2>Largest files</h2>")
        for layer in listed:
            parts.append('<details open="open">')
            parts.append(
                f"<summary>layer {layer.index} ({human_bytes(layer.size)}): "
                f"<code>{escape(layer.step or '(no history)')}</code></summary>"
            )
            biggest = max((f.size for f in layer.largest), default=0)
            parts.append('<table class="files"><tbody>')
            for f in layer.largest:
                parts.append(
                    f'<tr><td class="num">{human_bytes(f.size)}</td>'
                    f'<td class="bar">{_bar(f.size, biggest)}</td><td><code>{escape(f.path)}</code></td></tr>'
                )
            parts.append("</tbody></table>")
            if layer.whiteouts:
                n = layer.whiteouts
                parts.append(
                    f'<p class="note">This layer deletes {n} path{"" if n == 1 else "s"}; '
                    "deleted files still take space in the layers below.</p>"
                )
            parts.append("</details>")

    parts += ['<p class="note">Made by forklift size.</p>', "</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _colour(index: int) -> str:
    return _PALETTE[(index - 1) % len(_PALETTE)]


def _total(value: str, label: str) -> str:
    return (
        f'<div class="total"><div class="value">{escape(value)}</div>'
        f'<div class="label">{escape(label)}</div></div>'
    )
