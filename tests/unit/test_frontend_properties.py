"""Property test: random and mutated Dockerfiles through parse -> types -> plan raise only forklift errors.

A traceback for a user's broken Dockerfile is a bug; ``ForkliftError`` (with its location) is the
only acceptable failure. The corpus is the BuildKit parser cases in ../shared (when present) plus a
few multi-stage files of our own.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forklift.dockerfile.instructions import parse_dockerfile
from forklift.dockerfile.syntax import parse
from forklift.errors import ForkliftError
from forklift.oci.model import Platform
from forklift.plan.graph import PlanOptions, plan_build, stage_graph_json

REPO = Path(__file__).resolve().parents[2]
SHARED_PARSER_CASES = REPO.parent / "shared" / "conformance" / "parser"

OWN_CORPUS = (
    (REPO / "examples" / "rust-service" / "Dockerfile").read_text(),
    """\
# syntax=docker/dockerfile:1
# escape=\\
ARG BASE=alpine:3.20 TAG
FROM --platform=$BUILDPLATFORM ${BASE} AS Deps
ARG TARGETARCH
ENV A=1 B="two words" C=${A:-x}
RUN --mount=type=cache,target=/root/.cache,sharing=locked --mount=type=secret,id=tok,required \\
    echo $TARGETARCH > /arch
COPY --chmod=0755 --chown=1:1 --link <<EOF /usr/local/bin/hi
#!/bin/sh
echo hi
EOF
FROM deps AS builder
ONBUILD RUN echo trigger
RUN <<-EOT bash
\techo built > /out
\tEOT
HEALTHCHECK --interval=30s --retries=3 CMD ["true"]
FROM busybox AS unused
RUN exit 1
FROM scratch
COPY --from=builder /out /out
COPY --from=0 /arch /arch
COPY --from=busybox:latest /bin/busybox /bin/
RUN --mount=type=bind,from=deps,target=/d true
LABEL a=b c="d e"
EXPOSE 80/tcp 443
VOLUME ["/data"]
USER 1000:1000
WORKDIR /app
STOPSIGNAL SIGTERM
SHELL ["/bin/sh", "-c"]
ENTRYPOINT ["/bin/app"]
CMD ["--help"]
""",
)


def _corpus() -> tuple[str, ...]:
    files = list(OWN_CORPUS)
    if SHARED_PARSER_CASES.is_dir():
        for case in sorted(SHARED_PARSER_CASES.iterdir()):
            dockerfile = case / "Dockerfile"
            if dockerfile.is_file():
                files.append(dockerfile.read_text(encoding="utf-8", errors="replace"))
    return tuple(files)


CORPUS = _corpus()

# Fragments that poke at the interesting corners when spliced into a line.
FRAGMENTS = [
    "FROM ",
    " AS ",
    "COPY ",
    "--from=",
    "--from=0 ",
    "--mount=",
    "type=cache,target=/x",
    "type=secret",
    "from=deps,",
    "--chmod=",
    "--platform=",
    "<<EOF",
    "<<-'E'",
    "\nEOF\n",
    "${",
    "}",
    "$",
    ":-",
    ":?",
    "\\",
    "\\\n",
    "`",
    '"',
    "'",
    "[",
    '["a", ',
    "]",
    "#",
    "# escape=`\n",
    "ONBUILD ",
    "HEALTHCHECK ",
    "ARG ",
    "=",
    "\n",
    "\t",
    "\x00",
    "\ufeff",
    "é",
    " ",
]

line_edits = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 200)),
    st.tuples(st.just("duplicate"), st.integers(0, 200)),
    st.tuples(st.just("swap"), st.integers(0, 200), st.integers(0, 200)),
    st.tuples(st.just("insert"), st.integers(0, 200), st.text(max_size=40)),
    st.tuples(st.just("splice"), st.integers(0, 200), st.integers(0, 80), st.sampled_from(FRAGMENTS)),
    st.tuples(st.just("truncate"), st.integers(0, 200), st.integers(0, 80)),
)


def mutate(text: str, edits: list[tuple[object, ...]]) -> str:
    """Apply line edits to ``text`` (indexes wrap around the current line count)."""
    lines = text.split("\n")
    for edit in edits:
        kind = edit[0]
        if not lines:
            lines = [""]
        i = int(edit[1]) % len(lines)  # type: ignore[call-overload]
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            j = int(edit[2]) % len(lines)  # type: ignore[call-overload]
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "insert":
            lines.insert(i, str(edit[2]))
        elif kind == "splice":
            at = int(edit[2]) % (len(lines[i]) + 1)  # type: ignore[call-overload]
            lines[i] = lines[i][:at] + str(edit[3]) + lines[i][at:]
        elif kind == "truncate":
            lines[i] = lines[i][: int(edit[2])]  # type: ignore[call-overload]
    return "\n".join(lines)


targets = st.lists(st.sampled_from(["", "builder", "deps", "Deps", "unused", "nope", "0"]), max_size=2)
build_args = st.dictionaries(st.sampled_from(["BASE", "TAG", "A", "TARGETARCH", "X"]), st.text(max_size=12))


def through_the_frontend(text: str, target_names: list[str], args: dict[str, str]) -> None:
    """Parse, type and plan ``text``; only forklift's own errors may escape."""
    try:
        parsed = parse(text, file="Dockerfile")
        dockerfile = parse_dockerfile(parsed)
        options = PlanOptions(
            targets=tuple(t for t in target_names if t),
            build_args=args,
            build_platform=Platform(os="linux", architecture="amd64"),
        )
        graph = plan_build(dockerfile, options)
        stage_graph_json(graph)
    except ForkliftError as err:
        err.render()  # rendering must not fail either


PROPERTY_SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(
    base=st.sampled_from(CORPUS),
    edits=st.lists(line_edits, min_size=1, max_size=6),
    target_names=targets,
    args=build_args,
)
def test_mutated_dockerfiles_raise_only_forklift_errors(
    base: str, edits: list[tuple[object, ...]], target_names: list[str], args: dict[str, str]
) -> None:
    through_the_frontend(mutate(base, edits), target_names, args)


@PROPERTY_SETTINGS
@given(text=st.text(max_size=300), target_names=targets, args=build_args)
def test_random_text_raises_only_forklift_errors(
    text: str, target_names: list[str], args: dict[str, str]
) -> None:
    through_the_frontend(text, target_names, args)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_raise_only_forklift_errors(data: bytes) -> None:
    # The CLI rejects non-UTF-8 files itself; here every byte becomes some character.
    through_the_frontend(data.decode("latin-1"), [], {})


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=25).map("".join))
def test_fragment_soup_raises_only_forklift_errors(lines: str) -> None:
    through_the_frontend("FROM alpine AS deps\n" + lines, ["deps"], {})


def test_the_corpus_itself_is_valid_where_it_should_be() -> None:
    # Our own corpus files must plan cleanly: the mutations start from working Dockerfiles.
    for text in OWN_CORPUS:
        graph = plan_build(parse_dockerfile(parse(text, file="Dockerfile")))
        assert graph.stages
