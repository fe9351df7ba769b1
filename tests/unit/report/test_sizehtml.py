"""``forklift size --format html``: well-formed, self-contained, and showing stages, layers and files."""

from __future__ import annotations

import io
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import replace
from html.parser import HTMLParser

import pytest

from forklift.report.size import BuildRecord, FileSize, ImageSize, LayerSize, StageWeight, summarize
from forklift.report.sizehtml import render_html

VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source"}


class BalanceChecker(HTMLParser):
    """Records every start/end tag so the test can check that they nest properly."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def sample(
    *, with_build: bool = True, evil: str = "RUN echo '<script>alert(1)</script>' && rm -rf /x # buildkit"
) -> ImageSize:
    layers = (
        LayerSize(
            index=1,
            digest="sha256:" + "1" * 64,
            media_type="application/vnd.oci.image.layer.v1.tar+gzip",
            stored=1_000_000,
            uncompressed=2_500_000,
            compressed=1_000_000,
            created_by="ADD rootfs.tar / # buildkit",
            entries=40,
            whiteouts=0,
            largest=(FileSize("/bin/busybox", 1_100_000), FileSize("/lib/<odd & name>.so", 300_000)),
        ),
        LayerSize(
            index=2,
            digest="sha256:" + "2" * 64,
            media_type="application/vnd.oci.image.layer.v1.tar",
            stored=400_000,
            uncompressed=400_000,
            compressed=150_000,
            compressed_estimated=True,
            created_by=evil,
            entries=3,
            whiteouts=2,
            largest=(FileSize("/app", 390_000),),
        ),
    )
    record = BuildRecord(
        image_digest="sha256:" + "a" * 64,
        target="final",
        stages=(
            StageWeight(index=0, name="builder", layers=6, uncompressed_bytes=212_000_000),
            StageWeight(index=1, name="lint", built=False),
            StageWeight(index=2, name="final", final=True, layers=2, uncompressed_bytes=2_900_000),
        ),
    )
    return ImageSize(
        name="app:latest",
        digest="sha256:" + "a" * 64,
        image_id="sha256:" + "b" * 64,
        config_bytes=1200,
        layers=layers,
        empty_steps=3,
        build=record if with_build else None,
    )


def parse(page: str) -> BalanceChecker:
    checker = BalanceChecker()
    checker.feed(page)
    checker.close()
    assert checker.problems == []
    assert checker.stack == []
    return checker


@pytest.mark.parametrize("with_build", [True, False])
def test_well_formed_as_xml_and_html(with_build: bool) -> None:
    page = render_html(sample(with_build=with_build))
    assert page.startswith("<!DOCTYPE html>\n")
    root = ET.fromstring(page)  # raises on anything not well-formed
    assert root.tag == "html"
    parse(page)


def test_self_contained() -> None:
    page = render_html(sample())
    checker = parse(page)
    tags = {tag for tag, _ in checker.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed"}
    for _, attrs in checker.tags:
        assert "src" not in attrs and "href" not in attrs
    assert "http://" not in page and "https://" not in page and "url(" not in page


def test_user_text_is_escaped() -> None:
    page = render_html(sample())
    assert "<script>" not in page
    root = ET.fromstring(page)
    codes = ["".join(c.itertext()) for c in root.iter("code")]
    assert "RUN echo '<script>alert(1)</script>' && rm -rf /x" in codes
    assert "/lib/<odd & name>.so" in codes


def test_stages_layers_and_files_are_shown() -> None:
    size = sample()
    root = ET.fromstring(render_html(size))
    text = " ".join("".join(root.itertext()).split())
    assert size.build is not None
    assert summarize(size.build, size) in text
    tables = list(root.iter("table"))
    assert len(tables) == 2 + 2  # stages, layers, one file table per listed layer
    stage_rows = tables[0].find("tbody")
    assert stage_rows is not None
    cells = [["".join(td.itertext()) for td in row] for row in stage_rows]
    assert [c[:5] for c in cells] == [
        ["0", "builder", "left out", "6", "212 MB"],
        ["1", "lint", "not built", "", ""],
        ["2", "final", "final image", "2", "2.9 MB"],
    ]
    bars = [
        fill.get("style") for row in stage_rows for fill in row.iter("div") if fill.get("class") == "fill"
    ]
    assert bars == ["width: 100.0%", "width: 1.4%"]  # the skipped stage has no bar
    layer_rows = tables[1].find("tbody")
    assert layer_rows is not None and len(layer_rows) == 2
    assert "150 kB*" in "".join(layer_rows[1].itertext())
    assert "gzip estimate" in text
    assert "/bin/busybox" in text and "deletes 2 paths" in text


def test_without_a_build_record_there_is_no_stage_section() -> None:
    root = ET.fromstring(render_html(sample(with_build=False)))
    headings = ["".join(h.itertext()) for h in root.iter("h2")]
    assert headings == ["Layers", "Largest files"]


def test_an_image_without_layers() -> None:
    size = ImageSize(
        name="scratch", digest="sha256:" + "c" * 64, image_id="sha256:" + "d" * 64, config_bytes=10, layers=()
    )
    root = ET.fromstring(render_html(size))
    assert "This image has no layers." in "".join(root.itertext())


def test_real_tar_names_round_trip_through_the_page() -> None:
    # Paths come from tar headers, which may hold any character XML accepts.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("d/ü \"quoted\" 'x' >.txt")
        tar.addfile(info, io.BytesIO(b""))
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        name = "/" + tar.getnames()[0]
    size = sample(with_build=False)
    layer = size.layers[0]
    size = ImageSize(
        name=size.name,
        digest=size.digest,
        image_id=size.image_id,
        config_bytes=1,
        layers=(replace(layer, largest=(FileSize(name, 5),)),),
    )
    root = ET.fromstring(render_html(size))
    assert name in ["".join(c.itertext()) for c in root.iter("code")]


def test_composition_bar() -> None:
    size = sample()
    root = ET.fromstring(render_html(size))
    stack = next(d for d in root.iter("div") if d.get("class") == "stack")
    widths = [float((seg.get("style") or "").split("width: ")[1].split("%")[0]) for seg in stack]
    assert len(widths) == len(size.layers)
    assert sum(widths) == pytest.approx(100, abs=0.05)
    assert widths[0] == pytest.approx(100 * 2_500_000 / 2_900_000, abs=0.01)
    assert "layer 2, 400 kB: RUN echo" in (stack[1].get("title") or "")
