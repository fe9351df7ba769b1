"""End-to-end builds on a busybox base with the real runtime (runc) and real overlayfs.

Each instruction's effect is checked in the exported image (umoci unpacks it, and the config is
read from the OCI layout); the cache is checked through the plain progress output.
"""

from __future__ import annotations

import io
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from registry_fixtures import RegistryServer

from forklift.build import BuildOptions, BuildResult, OutputSpec, build
from forklift.errors import BuildError
from forklift.report.progress import PlainRenderer
from support import missed, require_tool

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _runtime() -> None:
    require_tool("runc")


def run_build(
    context: Path, store: Path, dockerfile: str | None = None, **kwargs: object
) -> tuple[BuildResult, str]:
    """Build ``context`` (writing ``dockerfile`` first when given); return the result and plain progress."""
    if dockerfile is not None:
        (context / "Dockerfile").write_text(dockerfile)
    out = io.StringIO()
    result = build(BuildOptions(context=context, root=store, **kwargs), events=PlainRenderer(out))  # type: ignore[arg-type]
    return result, out.getvalue()


def image_json(store: Path, result: BuildResult) -> tuple[dict[str, object], dict[str, object]]:
    """(manifest, config) of the built image, read from the store's blobs."""

    def blob(digest: str) -> dict[str, object]:
        algo, hexpart = digest.split(":")
        data: dict[str, object] = json.loads((store / "blobs" / algo / hexpart).read_text())
        return data

    manifest = blob(result.image.digest)
    config = blob(result.image.image_id)
    return manifest, config


def umoci_rootfs(tmp: Path, layout: Path, tag: str) -> Path:
    """Unpack ``layout:tag`` with umoci; return the root filesystem."""
    umoci = require_tool("umoci")
    bundle = tmp / "bundle"
    subprocess.run(
        [umoci, "unpack", "--image", f"{layout}:{tag}", str(bundle)], check=True, capture_output=True
    )
    return bundle / "rootfs"


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    d = tmp_path / "ctx"
    d.mkdir()
    return d


@pytest.fixture
def store(store_root: Path, busybox_image: Callable[[Path], str]) -> Path:
    busybox_image(store_root)
    return store_root


EVERY_INSTRUCTION = """\
FROM busybox
MAINTAINER someone@example.com
ARG GREETING=hello
ENV APP_HOME=/srv/app PATH=/srv/app/bin:$PATH
LABEL org.example.name="demo app" version=1
EXPOSE 8080 53/udp
WORKDIR $APP_HOME
COPY --chown=app:app --chmod=750 tool.sh bin/tool
COPY data/ data/
RUN echo "$GREETING from $(pwd)" > greeting.txt && rm /etc/group && mkdir -p /var/cache/x
RUN <<EOF
echo heredoc > /srv/app/heredoc.txt
EOF
VOLUME /srv/app/state
USER app
SHELL ["/bin/sh", "-ec"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --timeout=3s CMD wget -q -O- localhost:8080 || exit 1
ONBUILD RUN echo child
ENTRYPOINT ["/srv/app/bin/tool"]
CMD ["serve"]
"""


def test_every_instruction_lands_in_the_image(ctx: Path, store: Path, tmp_path: Path) -> None:
    (ctx / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    (ctx / "data").mkdir()
    (ctx / "data" / "a.txt").write_text("A")
    (ctx / "ignored.txt").write_text("no")
    (ctx / ".dockerignore").write_text("ignored.txt\n")
    layout = tmp_path / "layout"
    result, _ = run_build(
        ctx,
        store,
        EVERY_INSTRUCTION,
        tags=("demo:1",),
        build_args={"GREETING": "hi"},
        outputs=(OutputSpec(type="oci", dest=layout, tar=False),),
    )
    _, config = image_json(store, result)
    c = config["config"]
    assert isinstance(c, dict)
    assert c["WorkingDir"] == "/srv/app"
    assert "APP_HOME=/srv/app" in c["Env"] and "PATH=/srv/app/bin:/usr/local/sbin" in " ".join(c["Env"])
    assert c["Labels"] == {"org.example.name": "demo app", "version": "1"}
    assert set(c["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    assert set(c["Volumes"]) == {"/srv/app/state"}
    assert c["User"] == "app"
    assert c["Shell"] == ["/bin/sh", "-ec"]
    assert c["StopSignal"] == "SIGINT"
    assert c["Healthcheck"]["Test"] == ["CMD-SHELL", "wget -q -O- localhost:8080 || exit 1"]
    assert c["Healthcheck"]["Interval"] == 30_000_000_000
    assert c["OnBuild"] == ["RUN echo child"]
    assert c["Entrypoint"] == ["/srv/app/bin/tool"] and c["Cmd"] == ["serve"]
    assert config["author"] == "someone@example.com"
    history = config["history"]
    assert isinstance(history, list)
    created_by = [h["created_by"] for h in history]
    assert (
        "ENV APP_HOME=/srv/app PATH=/srv/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        in created_by
    )
    assert any(
        cb.startswith("RUN |1 GREETING=hi /bin/sh -c echo") and cb.endswith("# buildkit") for cb in created_by
    )
    assert "COPY data/ data/ # buildkit" in created_by
    assert "EXPOSE map[53/udp:{} 8080/tcp:{}]" in created_by
    assert all(h.get("empty_layer") for h in history if h["created_by"].startswith(("ENV", "LABEL", "CMD")))
    assert sum(1 for h in history if not h.get("empty_layer")) == len(config["rootfs"]["diff_ids"])  # type: ignore[index]

    rootfs = umoci_rootfs(tmp_path, layout, "1")  # the layout names it by its tag (ref.name)
    tool = rootfs / "srv/app/bin/tool"
    assert tool.read_text() == "#!/bin/sh\necho tool\n"
    assert (tool.stat().st_mode & 0o777, tool.stat().st_uid, tool.stat().st_gid) == (0o750, 1000, 1000)
    assert (rootfs / "srv/app/data/a.txt").read_text() == "A"
    assert (rootfs / "srv/app/greeting.txt").read_text() == "hi from /srv/app\n"
    assert (rootfs / "srv/app/heredoc.txt").read_text() == "heredoc\n"
    assert not (rootfs / "etc/group").exists()  # deleted in a RUN: really gone
    assert (rootfs / "var/cache/x").is_dir()
    assert not (rootfs / "srv/app/ignored.txt").exists()
    for placeholder in ("etc/resolv.conf", "etc/hosts", "etc/hostname"):
        assert not (rootfs / placeholder).exists()


def test_rebuild_is_all_cached_with_the_same_image_id(ctx: Path, store: Path) -> None:
    (ctx / "f.txt").write_text("1")
    dockerfile = 'FROM busybox\nENV X=1\nCOPY f.txt /f.txt\nRUN cp /f.txt /g.txt\nCMD ["cat", "/g.txt"]\n'
    first, progress1 = run_build(ctx, store, dockerfile)
    assert len(missed(progress1)) == 2
    second, progress2 = run_build(ctx, store)
    assert missed(progress2) == []
    assert progress2.count("CACHED") == 3  # FROM, COPY, RUN
    assert second.image.image_id == first.image.image_id
    assert second.image.digest == first.image.digest


def test_changing_one_context_file_reruns_only_from_the_copy_that_reads_it(ctx: Path, store: Path) -> None:
    (ctx / "a.txt").write_text("a")
    (ctx / "b.txt").write_text("b")
    dockerfile = (
        "FROM busybox\nCOPY a.txt /a.txt\nRUN cat /a.txt > /a2\nCOPY b.txt /b.txt\nRUN cat /b.txt > /b2\n"
    )
    run_build(ctx, store, dockerfile)
    time.sleep(0.15)  # out of the stat cache's racy window
    (ctx / "b.txt").write_text("B!")
    result, progress = run_build(ctx, store)
    assert [m.split("] ", 1)[1] for m in missed(progress)] == ["COPY b.txt /b.txt", "RUN cat /b.txt > /b2"]
    assert "b.txt changed" in progress  # the miss is explained
    assert "an earlier step changed (COPY b.txt /b.txt)" in progress
    _, config = image_json(store, result)
    assert len(config["rootfs"]["diff_ids"]) == 5  # type: ignore[index]


MULTISTAGE = """\
FROM busybox AS builder
WORKDIR /build
COPY src.txt .
RUN mkdir -p /out && tr a-z A-Z < src.txt > /out/app && chmod 755 /out/app \\
 && dd if=/dev/zero of=/junk bs=1k count=64

FROM busybox AS broken
RUN exit 1

FROM does-not-exist.invalid/nothing:here AS missing
RUN true

FROM busybox
WORKDIR /srv
COPY --from=builder /out/app /usr/local/bin/app
COPY --from=0 /build/src.txt ./src-copy.txt
CMD ["./app"]
"""


def test_multi_stage_copies_only_the_artifact_and_skips_unused_stages(
    ctx: Path, store: Path, tmp_path: Path
) -> None:
    (ctx / "src.txt").write_text("binary\n")
    rootfs_dir = tmp_path / "rootfs"
    result, progress = run_build(ctx, store, MULTISTAGE, outputs=(OutputSpec(type="local", dest=rootfs_dir),))
    assert "RUN exit 1" not in progress and "does-not-exist" not in progress
    assert (rootfs_dir / "usr/local/bin/app").read_text() == "BINARY\n"
    assert (rootfs_dir / "srv/src-copy.txt").read_text() == "binary\n"
    assert not (rootfs_dir / "junk").exists() and not (rootfs_dir / "build").exists()
    _, config = image_json(store, result)
    assert config["config"]["WorkingDir"] == "/srv" and config["config"]["Cmd"] == ["./app"]  # type: ignore[index]


def test_early_cut_off_when_the_builder_output_is_unchanged(ctx: Path, store: Path) -> None:
    (ctx / "src.txt").write_text("same\n")
    (ctx / "notes.txt").write_text("v1")
    dockerfile = (
        "FROM busybox AS builder\nCOPY . /in\nRUN cat /in/src.txt > /artifact && touch -d @0 /artifact\n"
        "FROM busybox\nCOPY --from=builder /artifact /artifact\nRUN cat /artifact\n"
    )
    first, _ = run_build(ctx, store, dockerfile)
    time.sleep(0.15)
    (ctx / "notes.txt").write_text("v2")  # read by the builder, irrelevant to the artifact
    second, progress = run_build(ctx, store)
    stages = [m.split(" ", 1)[0] for m in missed(progress)]
    assert stages == ["[builder", "[builder"]  # the builder re-ran; nothing of the final stage did
    assert second.image.image_id == first.image.image_id


def test_a_failing_run_reports_status_location_and_output(ctx: Path, store: Path) -> None:
    dockerfile = "FROM busybox\nRUN echo first\nRUN echo 'about to fail' && exit 3\n"
    with pytest.raises(BuildError) as info:
        run_build(ctx, store, dockerfile)
    err = info.value
    assert "exit code: 3" in err.message
    assert err.location is not None and err.location.line == 3
    assert err.hint is not None and "about to fail" in err.hint


def test_independent_stages_run_concurrently(ctx: Path, store: Path) -> None:
    from forklift.report.progress import Event, StepDone, StepStarted

    dockerfile = (
        "".join(f"FROM busybox AS {n}\nRUN sleep 2 && echo {n} > /{n}\n" for n in ("a", "b", "c"))
        + "FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\nCOPY --from=c /c /c\n"
    )
    (ctx / "Dockerfile").write_text(dockerfile)
    times: dict[int, list[float]] = {}
    runs: set[int] = set()

    def sink(event: Event) -> None:
        if isinstance(event, StepStarted) and "RUN sleep" in event.name:
            runs.add(event.vertex)
            times[event.vertex] = [time.monotonic()]
        elif isinstance(event, StepDone) and event.vertex in runs:
            times[event.vertex].append(time.monotonic())

    started = time.monotonic()
    build(BuildOptions(context=ctx, root=store, jobs=3), events=sink)
    elapsed = time.monotonic() - started
    assert len(runs) == 3
    # All three were running at once: each started before any of them finished.
    assert max(t[0] for t in times.values()) < min(t[1] for t in times.values())
    assert elapsed < 6.0  # sequential would take over 6 s


def test_cache_mounts_persist_and_secrets_stay_out_of_layers(ctx: Path, store: Path, tmp_path: Path) -> None:
    from forklift.execute.options import SecretSource

    secret = tmp_path / "token"
    secret.write_text("s3cr3t-value")
    dockerfile = (
        "FROM busybox\n"
        "ARG N=1\n"
        "RUN --mount=type=cache,target=/cache echo $N >> /cache/log && cat /cache/log > /seen\n"
        "RUN --mount=type=secret,id=token cat /run/secrets/token | wc -c > /secret-len\n"
    )
    rootfs_dir = tmp_path / "rootfs"
    run_build(ctx, store, dockerfile, build_args={"N": "1"}, secrets=(SecretSource(id="token", file=secret),))
    _, progress = run_build(
        ctx,
        store,
        build_args={"N": "2"},
        secrets=(SecretSource(id="token", file=secret),),
        outputs=(OutputSpec(type="local", dest=rootfs_dir),),
    )
    assert "argument N changed ('1' -> '2')" in progress
    assert (rootfs_dir / "seen").read_text() == "1\n2\n"  # the cache mount kept the first build's line
    assert (rootfs_dir / "secret-len").read_text().strip() == "12"
    assert not (rootfs_dir / "run/secrets/token").exists()
    for layer in (store / "blobs" / "sha256").iterdir():
        assert b"s3cr3t-value" not in layer.read_bytes()
    for record in (store / "cache").rglob("*.json"):
        assert "s3cr3t-value" not in record.read_text()


def test_source_date_epoch_gives_reproducible_images(
    tmp_path: Path, busybox_image: Callable[[Path], str]
) -> None:
    digests = []
    for i in range(2):
        ctx = tmp_path / f"ctx{i}"
        ctx.mkdir()
        (ctx / "f.txt").write_text("same")
        store = tmp_path / f"store{i}"
        busybox_image(store)
        result, _ = run_build(
            ctx,
            store,
            "FROM busybox\nCOPY f.txt /f.txt\nRUN echo x > /x\nENV A=1\n",
            source_date_epoch=1700000000,
        )
        digests.append(result.image.digest)
        _, config = image_json(store, result)
        assert config["created"] == "2023-11-14T22:13:20Z"
    assert digests[0] == digests[1]


def test_cli_build_quiet_prints_the_image_id(ctx: Path, store: Path, tmp_path: Path) -> None:
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo hi > /hi\n")
    iid = tmp_path / "iid"
    archive = tmp_path / "image.tar"
    cmd = [
        str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "forklift"),
        "--root",
        str(store),
        "build",
        "-q",
        "-t",
        "hello:cli",
        "--iidfile",
        str(iid),
        "-o",
        f"type=docker,dest={archive}",
        str(ctx),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
    assert out.startswith("sha256:") and iid.read_text() == out
    skopeo = require_tool("skopeo")
    inspected = subprocess.run(
        [skopeo, "inspect", "--config", f"docker-archive:{archive}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert json.loads(inspected)["rootfs"]["diff_ids"]


def test_from_pulls_a_missing_base_from_its_registry(
    ctx: Path, tmp_path: Path, busybox_image: Callable[[Path], str], plain_registry: RegistryServer
) -> None:
    from forklift.oci.registry.transfer import push_image
    from forklift.oci.store import Store

    seed = tmp_path / "seed"
    name = busybox_image(seed)
    remote = f"{plain_registry.host}/engine/busybox:pulled"
    push_image(Store(seed), name, remote)
    empty_store = tmp_path / "empty"
    result, progress = run_build(ctx, empty_store, f"FROM {remote}\nRUN echo pulled > /p\n")
    assert "cache miss" in progress and result.image.image_id.startswith("sha256:")


def test_onbuild_triggers_run_in_the_child_of_an_image(ctx: Path, store: Path) -> None:
    run_build(ctx, store, "FROM busybox\nONBUILD RUN echo triggered > /onbuild\n", tags=("parent:1",))
    result, progress = run_build(ctx, store, "FROM parent:1\nRUN cat /onbuild\n", tags=("child:1",))
    assert "RUN echo triggered > /onbuild" in progress
    _, config = image_json(store, result)
    assert "OnBuild" not in config["config"]  # type: ignore[operator]
    _, progress = run_build(ctx, store, "FROM child:1\nRUN test ! -e /nothing\n")
    assert "] RUN echo triggered" not in progress  # triggers are not passed to grandchildren


def test_build_context_replaces_a_stage_and_an_image(ctx: Path, store: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "from-extra.txt").write_text("extra")
    dockerfile = "FROM busybox AS deps\nRUN exit 1\nFROM base\nCOPY --from=deps /from-extra.txt /got.txt\n"
    out = tmp_path / "rootfs"
    run_build(
        ctx,
        store,
        dockerfile,
        build_contexts={"deps": str(extra), "base": "docker-image://busybox"},
        outputs=(OutputSpec(type="local", dest=out),),
    )
    assert (out / "got.txt").read_text() == "extra"
    assert (out / "bin" / "busybox").exists()


def test_a_failure_stops_the_other_stages_and_is_the_error_reported(ctx: Path, store: Path) -> None:
    dockerfile = (
        "FROM busybox AS slow\nRUN sleep 60\n"
        "FROM busybox AS bad\nRUN sleep 1 && exit 5\n"
        "FROM busybox\nCOPY --from=slow /bin/sh /a\nCOPY --from=bad /bin/sh /b\n"
    )
    started = time.monotonic()
    with pytest.raises(BuildError) as info:
        run_build(ctx, store, dockerfile, jobs=2)
    assert "exit code: 5" in info.value.message and info.value.location is not None
    assert info.value.location.line == 4
    assert time.monotonic() - started < 30  # the 60 s sleep was killed, not waited for


def test_an_unchanged_rebuild_is_answered_from_the_memo_and_a_new_file_is_still_seen(
    ctx: Path, store: Path, tmp_path: Path
) -> None:
    (ctx / "src").mkdir()
    (ctx / "src" / "a.txt").write_text("a")
    dockerfile = "FROM busybox\nCOPY src/*.txt /src/\nRUN ls /src > /listing\n"
    first, _ = run_build(ctx, store, dockerfile)
    time.sleep(0.15)  # leave the racy window so the memo is written
    run_build(ctx, store)
    assert list((store / "cache" / "memo").glob("*.json"))
    again, progress = run_build(ctx, store)
    assert again.image.image_id == first.image.image_id and missed(progress) == []
    (ctx / "src" / "b.txt").write_text("b")  # matched by the wildcard: the directory changed
    rootfs = tmp_path / "rootfs"
    changed, progress = run_build(ctx, store, outputs=(OutputSpec(type="local", dest=rootfs),))
    assert changed.image.image_id != first.image.image_id
    assert (rootfs / "listing").read_text() == "a.txt\nb.txt\n"
    assert "src/b.txt" in progress and "added" in progress


def test_stage_semantics_targets_and_no_cache_filter(ctx: Path, store: Path, tmp_path: Path) -> None:
    dockerfile = (
        "ARG GLOBAL=g\n"
        "FROM busybox AS Base\nENV FROM_BASE=1\nWORKDIR /work\nARG GLOBAL\n"
        'RUN echo "[$GLOBAL]" > /global-redeclared\n'
        "FROM base AS child\nARG GLOBAL_UNSEEN\n"
        'RUN echo "[$FROM_BASE][$(pwd)][$GLOBAL_UNSEEN]" > /inherited\n'
        'FROM busybox AS other\nRUN echo "[$GLOBAL]" > /global-not-redeclared\n'
    )
    out_child, out_other = tmp_path / "child", tmp_path / "other"
    result, _ = run_build(
        ctx,
        store,
        dockerfile,
        targets=("CHILD", "other"),
        tags=("t:child", "t:other"),
        outputs=(OutputSpec(type="local", dest=out_child), OutputSpec(type="local", dest=out_other)),
    )
    assert [b.target for b in result.images] == ["child", "other"]
    assert [b.tags for b in result.images] == [("t:child",), ("t:other",)]
    assert (out_child / "global-redeclared").read_text() == "[g]\n"
    assert (out_child / "inherited").read_text() == "[1][/work][]\n"
    assert (out_other / "global-not-redeclared").read_text() == "[]\n"
    _, progress = run_build(ctx, store, targets=("child",), no_cache_filter=("child",))
    assert [m.split(" ", 1)[0] for m in missed(progress)] == ["[child"]  # base stayed cached


def test_copy_and_add_options(ctx: Path, store: Path, tmp_path: Path) -> None:
    import hashlib
    import http.server
    import tarfile
    import threading

    (ctx / "app" / "sub").mkdir(parents=True)
    (ctx / "app" / "keep.txt").write_text("keep")
    (ctx / "app" / "skip.log").write_text("skip")
    (ctx / "app" / "sub" / "deep.txt").write_text("deep")
    archive_src = tmp_path / "payload"
    archive_src.mkdir()
    (archive_src / "inside.txt").write_text("from the archive")
    with tarfile.open(ctx / "bundle.tar.gz", "w:gz") as tar:
        tar.add(archive_src / "inside.txt", arcname="pkg/inside.txt")
    served = tmp_path / "served"
    served.mkdir()
    (served / "remote.txt").write_text("remote content")
    checksum = "sha256:" + hashlib.sha256(b"remote content").hexdigest()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(served), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/remote.txt"
    try:
        dockerfile = (
            "FROM busybox\n"
            "COPY --exclude=*.log app/ /excluded/\n"
            "COPY --parents app/sub/deep.txt /parents/\n"
            "COPY --link app/keep.txt /linked/keep.txt\n"
            "ADD bundle.tar.gz /unpacked/\n"
            f"ADD --checksum={checksum} {url} /downloads/\n"
            "RUN --network=none cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > /ifaces\n"
            "USER app\nWORKDIR /home/app/work\n"
        )
        rootfs = tmp_path / "rootfs"
        result, _ = run_build(ctx, store, dockerfile, outputs=(OutputSpec(type="local", dest=rootfs),))
    finally:
        server.shutdown()
    assert (rootfs / "excluded/keep.txt").exists() and not (rootfs / "excluded/skip.log").exists()
    assert (rootfs / "excluded/sub/deep.txt").read_text() == "deep"
    assert (rootfs / "parents/app/sub/deep.txt").read_text() == "deep"
    assert (rootfs / "linked/keep.txt").read_text() == "keep"
    assert (rootfs / "unpacked/pkg/inside.txt").read_text() == "from the archive"
    remote = rootfs / "downloads/remote.txt"
    assert remote.read_text() == "remote content" and remote.stat().st_mode & 0o777 == 0o600
    assert (rootfs / "ifaces").read_text().split() == ["lo"]
    work = rootfs / "home/app/work"
    assert work.is_dir() and (work.stat().st_uid, work.stat().st_gid) == (1000, 1000)
    bad = f"FROM busybox\nADD --checksum=sha256:{'0' * 64} {url} /x\n"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(BuildError, match="checksum mismatch"):
            run_build(ctx, store, bad.replace(url, f"http://127.0.0.1:{server.server_address[1]}/remote.txt"))
    finally:
        server.shutdown()
    with pytest.raises(BuildError, match="outside the build context"):
        run_build(ctx, store, "FROM busybox\nCOPY ../secret /x\n")
    assert result.image.image_id


def test_cli_reads_the_dockerfile_from_stdin_and_check_stops_before_building(ctx: Path, store: Path) -> None:
    forklift = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "forklift")
    base = [forklift, "--root", str(store), "build"]
    done = subprocess.run(
        [*base, "-q", "-f", "-", str(ctx)],
        input="FROM busybox\nRUN echo from-stdin > /s\n",
        check=True,
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip().startswith("sha256:")
    (ctx / "Dockerfile").write_text("FROM busybox\nMAINTAINER me\nRUN exit 1\n")
    checked = subprocess.run([*base, "--check", str(ctx)], capture_output=True, text=True)
    assert checked.returncode == 0 and "MaintainerDeprecated" in checked.stdout  # RUN exit 1 never ran


def test_build_summary_weighs_the_stages_and_max_size_fails_a_big_image(ctx: Path, store: Path) -> None:
    from forklift.report.size import read_build_record

    (ctx / "src.txt").write_text("binary\n")
    dockerfile = (
        "FROM busybox AS builder\nRUN dd if=/dev/zero of=/junk bs=1k count=512 && echo bin > /app\n"
        "FROM busybox\nCOPY --from=builder /app /app\n"
    )
    result, progress = run_build(ctx, store, dockerfile)
    assert "builder stage 'builder' weighed" in progress and "left out" in progress
    record = read_build_record(store, result.image.digest)
    assert record is not None and [s.name for s in record.left_out] == ["builder"]
    builder_layer = record.left_out[0].layer_digests[-1]  # the builder's RUN: never shipped
    assert not (store / "blobs" / "sha256" / builder_layer.split(":")[1]).exists()  # so never written
    assert (store / "snapshots" / builder_layer.replace(":", "-")).is_dir()  # its content is the snapshot
    with pytest.raises(BuildError, match="max-size"):
        run_build(ctx, store, max_size="10kB")


def test_a_rerun_copy_links_the_unchanged_files_of_its_previous_snapshot(ctx: Path, store: Path) -> None:
    (ctx / "src").mkdir()
    for i in range(20):
        (ctx / "src" / f"f{i}.txt").write_text(f"file {i}\n")
    first, _ = run_build(ctx, store, "FROM busybox\nCOPY src /src\n")
    time.sleep(0.15)
    (ctx / "src" / "f0.txt").write_text("changed\n")
    second, _ = run_build(ctx, store)
    _, config = image_json(store, second)
    diff_id = config["rootfs"]["diff_ids"][-1]  # type: ignore[index]
    snapshot = store / "snapshots" / diff_id.replace(":", "-")
    assert (snapshot / "src" / "f0.txt").read_text() == "changed\n"
    assert (snapshot / "src" / "f0.txt").stat().st_nlink == 1  # the changed file was copied
    assert (snapshot / "src" / "f5.txt").stat().st_nlink == 2  # an unchanged one is shared
    rootfs = ctx.parent / "rootfs"
    run_build(ctx, store, outputs=(OutputSpec(type="local", dest=rootfs),))
    assert sorted(p.name for p in (rootfs / "src").iterdir()) == sorted(f"f{i}.txt" for i in range(20))
    assert first.image.image_id != second.image.image_id


def test_run_bind_mounts_from_a_stage_and_the_context(ctx: Path, store: Path, tmp_path: Path) -> None:
    (ctx / "input.txt").write_text("from the context\n")
    dockerfile = (
        "FROM busybox AS tools\nRUN echo tool-output > /made\n"
        "FROM busybox\n"
        "RUN --mount=type=bind,from=tools,target=/t --mount=type=bind,source=input.txt,target=/in.txt "
        "cat /t/made /in.txt > /combined && touch /t/x 2>/dev/null || echo read-only > /ro\n"
    )
    rootfs = tmp_path / "rootfs"
    run_build(ctx, store, dockerfile, outputs=(OutputSpec(type="local", dest=rootfs),))
    assert (rootfs / "combined").read_text() == "tool-output\nfrom the context\n"
    assert (rootfs / "ro").read_text() == "read-only\n"  # bind mounts are read-only by default
    assert not (rootfs / "t" / "made").exists()  # a mount's content is not part of the layer


def test_push_sends_the_built_image_to_a_registry(
    ctx: Path, store: Path, tmp_path: Path, plain_registry: RegistryServer
) -> None:
    from forklift.oci.registry.transfer import pull_image
    from forklift.oci.store import Store

    remote = f"{plain_registry.host}/engine/pushed:1"
    result, _ = run_build(
        ctx,
        store,
        "FROM busybox\nRUN echo pushed > /p\n",
        tags=(remote,),
        outputs=(OutputSpec.parse("type=registry"),),
    )
    other = tmp_path / "other"
    pulled = pull_image(Store(other), remote)
    assert str(pulled.config_digest) == result.image.image_id


def test_cache_mount_seeded_from_a_stage_and_private_sharing(ctx: Path, store: Path, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox AS seed\nRUN mkdir -p /deps && echo seeded > /deps/lib.txt\n"
        "FROM busybox\n"
        "RUN --mount=type=cache,target=/c,from=seed,source=/deps cat /c/lib.txt > /from-seed\n"
        "RUN --mount=type=cache,target=/p,sharing=private,id=priv echo one >> /p/log && cat /p/log > /priv\n"
    )
    rootfs = tmp_path / "rootfs"
    run_build(ctx, store, dockerfile, outputs=(OutputSpec(type="local", dest=rootfs),))
    assert (rootfs / "from-seed").read_text() == "seeded\n"
    assert (rootfs / "priv").read_text() == "one\n"
    assert not (rootfs / "c" / "lib.txt").exists()


def test_the_copy_fallback_gives_the_same_layers_as_overlayfs(
    tmp_path: Path, busybox_image: Callable[[Path], str]
) -> None:
    dockerfile = (
        "FROM busybox\nRUN rm /etc/group && mkdir -p /opt/a && echo x > /opt/a/f && rm -r /root\n"
        "RUN echo more >> /opt/a/f && rm /opt/a/f && echo y > /opt/g\n"
    )
    diff_ids = []
    for overlay in (True, False):
        ctx = tmp_path / f"ctx-{overlay}"
        ctx.mkdir()
        store = tmp_path / f"store-{overlay}"
        busybox_image(store)
        result, _ = run_build(ctx, store, dockerfile, overlay=overlay, source_date_epoch=1700000000)
        _, config = image_json(store, result)
        diff_ids.append(config["rootfs"]["diff_ids"])  # type: ignore[index]
    assert diff_ids[0] == diff_ids[1]
