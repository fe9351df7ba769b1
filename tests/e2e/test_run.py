"""``forklift run``: real containers (runc, overlayfs) from images in a real store.

A few runs go through the installed command (``.venv/bin/forklift``) as a user would run it
(exit status, stdin, a pseudo-terminal, signals, error messages); the rest use click's runner,
whose in-memory streams the command relays through pipes.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from forklift.errors import ForkliftError, ImageError
from forklift.execute.container import RUN_STATE_ROOT
from forklift.oci.image import Image
from forklift.oci.store import Store
from forklift.runtime.oci import OciRuntime

FORKLIFT = Path(sys.executable).with_name("forklift")
CONFIGURED = "docker.io/library/configured:latest"
LAYERED = "docker.io/library/layered:latest"


@pytest.fixture(scope="module")
def store(
    busybox_image: Callable[[Path], str], oci_runtime: object, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A store with busybox (CMD sh) and ``configured``: busybox with ENTRYPOINT, CMD, ENV,
    WORKDIR and USER set, as a Dockerfile's config instructions would set them."""
    from forklift.oci.image import load_image, write_image
    from forklift.oci.model import ContainerConfig
    from forklift.oci.mutate import with_config
    from forklift.oci.store import Store

    root = tmp_path_factory.mktemp("run-store")
    name = busybox_image(root)
    config = ContainerConfig(
        env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=from-image"),
        entrypoint=("echo", "entry"),
        cmd=("default-cmd",),
        working_dir="/srv/app",
        user="app",
    )
    s = Store(root)
    write_image(s, with_config(load_image(s, name), config), name=CONFIGURED)
    write_image(s, _with_second_layer(s, load_image(s, name)), name=LAYERED)
    return root


def _with_second_layer(store: Store, img: Image) -> Image:
    """``img`` plus a layer that adds /etc/layer2, deletes /bin/vi (a whiteout) and hides what /usr
    held (an opaque directory): the container must see the layers merged in order."""
    from forklift.oci.model import Descriptor, Digest, MediaType
    from forklift.oci.mutate import append_layer

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        usr = tarfile.TarInfo("usr")
        usr.type, usr.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(usr)
        for name, data in (("etc/layer2", b"two\n"), ("bin/.wh.vi", b""), ("usr/.wh..wh..opq", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    blob = buffer.getvalue()
    digest = store.put_bytes(blob)
    layer = Descriptor(media_type=MediaType.OCI_LAYER, digest=digest, size=len(blob))
    return append_layer(img, layer, Digest.parse(str(digest)))


def cli_run(store: Path, *args: str, input: bytes | None = None) -> Result:
    """``forklift --root STORE run ARGS`` through click's runner."""
    from forklift.cli.main import cli

    return CliRunner().invoke(cli, ["--root", str(store), "run", *args], input=input)


def run_ok(store: Path, *args: str) -> str:
    result = cli_run(store, *args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 0, result.output
    return result.stdout


def forklift(store: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """The installed ``forklift`` command, as a user runs it."""
    argv = [str(FORKLIFT), "--root", str(store), *args]
    return subprocess.run(argv, capture_output=True, timeout=60, check=False, input=input)


# ---- through the installed command -------------------------------------------------------------------


@pytest.mark.e2e
def test_output_and_exit_status(store: Path) -> None:
    ran = forklift(store, "run", "busybox", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (ran.returncode, ran.stdout, ran.stderr) == (7, b"out\n", b"err\n")
    assert forklift(store, "run", "--rm", "busybox", "true").returncode == 0


@pytest.mark.e2e
def test_stdin_only_with_interactive(store: Path) -> None:
    assert forklift(store, "run", "-i", "busybox", "cat", input=b"data\n").stdout == b"data\n"
    # Without -i the container's stdin is /dev/null, as with docker run.
    assert forklift(store, "run", "busybox", "cat", input=b"data\n").stdout == b""


@pytest.mark.e2e
def test_tty_under_a_pseudo_terminal(store: Path, tool: Callable[[str], str]) -> None:
    script = tool("script")
    command = f"{FORKLIFT} --root {store} run -t busybox tty"
    ran = subprocess.run(
        [script, "-qec", command, "/dev/null"], capture_output=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.strip().startswith(b"/dev/pts/")
    # Without -t there is no terminal in the container.
    without = subprocess.run(
        [script, "-qec", command.replace(" -t ", " "), "/dev/null"],
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert without.returncode == 1
    assert b"not a tty" in without.stdout
    # -it: an interactive shell on the terminal; what is typed reaches it, its status comes back.
    shell = subprocess.run(
        [script, "-qec", command.replace(" -t busybox tty", " -it busybox sh"), "/dev/null"],
        capture_output=True,
        timeout=60,
        input=b"echo hello-$((6*7))\nexit 5\n",
    )
    assert shell.returncode == 5, shell.stdout
    assert b"hello-42" in shell.stdout


@pytest.mark.e2e
def test_unknown_image_is_a_clear_error(store: Path) -> None:
    ran = forklift(store, "run", "busyboc", "true")
    assert ran.returncode == 1
    err = ran.stderr.decode()
    assert "no such image: busyboc" in err
    assert "did you mean busybox:latest?" in err
    assert "Traceback" not in err


@pytest.mark.e2e
def test_sigterm_reaches_the_container(store: Path) -> None:
    """A process that handles SIGTERM gets it; one that does not (PID 1 ignores it) is killed."""
    trap = "trap 'echo stopping; exit 3' TERM; echo ready; while :; do sleep 0.1; done"
    for args, status, output in (
        (["sh", "-c", trap], 3, b"ready\nstopping\n"),
        (["sh", "-c", "echo ready; exec sleep 1000"], 137, b"ready\n"),
    ):
        proc = subprocess.Popen(
            [str(FORKLIFT), "--root", str(store), "run", "busybox", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == status, err
        assert b"ready\n" + out == output


# ---- through click's runner ----------------------------------------------------------------------------


@pytest.mark.e2e
def test_entrypoint_cmd_and_overrides(store: Path) -> None:
    assert run_ok(store, CONFIGURED) == "entry default-cmd\n"
    assert run_ok(store, CONFIGURED, "a", "b") == "entry a b\n"  # arguments replace CMD
    assert run_ok(store, "--entrypoint", "echo", CONFIGURED, "x") == "x\n"  # and drop CMD
    assert run_ok(store, "--entrypoint", "", CONFIGURED, "echo", "plain") == "plain\n"
    assert run_ok(store, "busybox", "echo", "-n", "flags stay the command's") == "flags stay the command's"


@pytest.mark.e2e
def test_env_from_image_and_options(store: Path, tmp_path: Path) -> None:
    show = ["--entrypoint", "sh", CONFIGURED, "-c", 'echo "$GREETING $EXTRA $FROM_FILE"']
    assert run_ok(store, *show) == "from-image  \n"
    env_file = tmp_path / "vars"
    env_file.write_text("# a comment\n\nFROM_FILE=file\nGREETING=from-file\n")
    both = run_ok(store, "--env-file", str(env_file), "-e", "GREETING=from-cli", "-e", "EXTRA=1", *show)
    assert both == "from-cli 1 file\n"  # -e wins over --env-file, which wins over ENV


@pytest.mark.e2e
def test_layers_are_merged_in_order(store: Path) -> None:
    script = (
        "cat /etc/layer2; test -e /bin/vi || echo vi-gone; ls -A /usr | wc -l; test -e /bin/ls && echo ls"
    )
    assert run_ok(store, "layered", "sh", "-c", script) == "two\nvi-gone\n0\nls\n"
    assert run_ok(store, "busybox", "sh", "-c", script) == "1\nls\n"  # the base alone


@pytest.mark.e2e
def test_workdir_and_user(store: Path) -> None:
    assert run_ok(store, "--entrypoint", "pwd", CONFIGURED) == "/srv/app\n"
    assert run_ok(store, "-w", "/tmp", "--entrypoint", "pwd", CONFIGURED) == "/tmp\n"
    assert run_ok(store, "--entrypoint", "id", CONFIGURED) == "uid=1000(app) gid=1000(app)\n"
    assert run_ok(store, "-u", "0", "--entrypoint", "id", CONFIGURED).startswith("uid=0(root) gid=0(root)")
    assert run_ok(store, "-u", "nobody", "busybox", "id", "-u") == "65534\n"
    assert run_ok(store, "busybox", "pwd") == "/\n"


@pytest.mark.e2e
def test_bind_mounts_read_write_and_read_only(store: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in").write_text("from host\n")
    out = run_ok(store, "-v", f"{data}:/data", "busybox", "sh", "-c", "cat /data/in; echo back > /data/out")
    assert out == "from host\n"
    assert (data / "out").read_text() == "back\n"
    ro = cli_run(store, "-v", f"{data}:/data:ro", "busybox", "sh", "-c", "echo no > /data/ro")
    assert ro.exit_code != 0
    assert "Read-only file system" in ro.stderr
    assert not (data / "ro").exists()


@pytest.mark.e2e
def test_network_none_has_only_loopback(store: Path) -> None:
    assert run_ok(store, "--network", "none", "busybox", "ls", "/sys/class/net").split() == ["lo"]
    host = sorted(os.listdir("/sys/class/net"))
    assert sorted(run_ok(store, "busybox", "ls", "/sys/class/net").split()) == host


@pytest.mark.e2e
def test_publish_is_a_note_on_host_network_and_an_error_without_one(store: Path) -> None:
    result = cli_run(store, "-p", "8080:80", "busybox", "true")
    assert result.exit_code == 0
    assert "publishes nothing" in result.stderr
    refused = cli_run(store, "--network", "none", "-p", "80", "busybox", "true")
    assert isinstance(refused.exception, ForkliftError)
    assert "--network none" in str(refused.exception)


@pytest.mark.e2e
def test_writes_never_reach_the_image(store: Path) -> None:
    first = cli_run(store, "busybox", "sh", "-c", "echo x > /marker; rm /bin/ls; test -e /marker")
    assert first.exit_code == 0
    second = run_ok(store, "busybox", "sh", "-c", "test -e /marker && echo kept; test -e /bin/ls && echo ls")
    assert second == "ls\n"
    snapshots = store / "snapshots"
    assert not list(snapshots.glob("*/marker"))
    assert not [p.name for p in snapshots.iterdir() if p.name.startswith(".container-")]


@pytest.mark.e2e
def test_scratch_of_a_killed_run_is_removed_by_the_next(store: Path, oci_runtime: OciRuntime) -> None:
    """A forklift killed with SIGKILL cannot clean up; the next run removes what it left, but
    never the scratch dir of a container that still runs (its runtime outlived forklift)."""
    from forklift.execute.container import remove_stale_scratch
    from forklift.execute.snapshots import SnapshotCache

    snapshots = SnapshotCache(store)
    proc = subprocess.Popen(
        [str(FORKLIFT), "--root", str(store), "run", "busybox", "sh", "-c", "echo ready; exec sleep 1000"],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    orphan_scratch = list(snapshots.root.glob(".container-*"))
    proc.kill()
    proc.wait()
    assert len(orphan_scratch) == 1 and orphan_scratch[0].is_dir()
    assert remove_stale_scratch(snapshots, oci_runtime) == []  # its container still runs
    assert (orphan_scratch[0] / "rootfs" / "bin" / "busybox").exists()
    # Stop the orphaned container the way a user would: with the runtime, in its state dir.
    runc = str(oci_runtime.binary)
    for state_dir in RUN_STATE_ROOT.iterdir():
        for container in state_dir.iterdir():
            state = subprocess.run(
                [runc, "--root", str(state_dir), "state", container.name], capture_output=True
            )
            if orphan_scratch[0].name.encode() in state.stdout:
                subprocess.run([runc, "--root", str(state_dir), "kill", container.name, "KILL"], check=True)
    for _ in range(60):  # the orphaned runtime notices the exit and deletes the container
        if remove_stale_scratch(snapshots, oci_runtime) == orphan_scratch:
            break
        time.sleep(0.5)
    assert not orphan_scratch[0].exists()


@pytest.mark.e2e
def test_process_mistakes_are_reported(store: Path) -> None:
    missing = cli_run(store, "busybox", "/no/such/program")
    assert missing.exit_code == 127
    bad_volume = cli_run(store, "-v", "relative:/x", "busybox", "true")
    assert isinstance(bad_volume.exception, ForkliftError)
    bad_user = cli_run(store, "-u", "ghost", "busybox", "true")
    assert isinstance(bad_user.exception, ForkliftError)
    assert "ghost" in str(bad_user.exception)


# ---- pure helpers (no containers) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("publish", "needle"),
    [(["8080:80"], "port 80 "), (["127.0.0.1:9000:9000/udp", "81"], "port 81, 9000 ")],
)
def test_publish_note_names_the_container_ports(publish: list[str], needle: str) -> None:
    from forklift.cli.run import _published_port_note

    note = _published_port_note(publish, "host")
    assert note is not None
    assert needle in note
    assert _published_port_note([], "host") is None
    with pytest.raises(ForkliftError):
        _published_port_note(publish, "none")


def test_env_file_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from forklift.cli.run import _env_file

    monkeypatch.setenv("FROM_HOST", "h")
    monkeypatch.delenv("UNSET_HERE", raising=False)
    path = tmp_path / "env"
    path.write_text("A=1\n  # note\n\nB= spaced \nFROM_HOST\nUNSET_HERE\nC=x=y\n")
    assert _env_file(path) == [("A", "1"), ("B", " spaced "), ("FROM_HOST", "h"), ("C", "x=y")]
    with pytest.raises(ForkliftError, match="cannot read"):
        _env_file(tmp_path / "absent")


def test_find_image_by_name_digest_and_id(busybox_image: Callable[[Path], str], store_root: Path) -> None:
    from forklift.execute.container import find_image
    from forklift.oci.image import image_id, load_image
    from forklift.oci.registry.reference import familiar_name

    name = busybox_image(store_root)
    s = Store(store_root)
    img = load_image(s, name)
    ident = image_id(img).hex
    for text in ("busybox", "busybox:latest", name, str(img.digest), f"sha256:{ident}", ident[:12]):
        assert find_image(s, text).digest == img.digest, text
    with pytest.raises(ImageError) as near:
        find_image(s, "busybx")
    assert near.value.hint == f"did you mean {familiar_name(name)}?"
    with pytest.raises(ImageError) as far:
        find_image(s, "postgres")
    assert far.value.hint is not None and "busybox:latest" in far.value.hint
    with pytest.raises(ImageError) as empty:
        find_image(Store(store_root / "empty"), "busybox")
    assert empty.value.hint is not None and "store is empty" in empty.value.hint
