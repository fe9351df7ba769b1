"""forklift bootstrap: the mmdebstrap command line, the import into the store, idempotence, errors.

The real mmdebstrap needs the Debian mirror, so offline tests hand bootstrap_debian a stand-in
program that checks the options it gets and writes a prepared root filesystem tarball where
mmdebstrap would; the test with the real mmdebstrap runs with FORKLIFT_NETWORK_TESTS=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from forklift.bases.debian import (
    MERGED_USR_HOOK,
    DebianBase,
    bootstrap_debian,
    mmdebstrap_argv,
)
from forklift.errors import ForkliftError
from forklift.oci.image import image_config, image_layers, load_image
from forklift.oci.store import Store
from support import require_tool

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# ---- the command line (pure) ----------------------------------------------------------------------------


def test_argv_minbase_merged_usr_tar_without_devices() -> None:
    argv = mmdebstrap_argv(DebianBase(), Path("/out/x.tar"))
    assert argv[0] == "mmdebstrap"
    assert "--variant=minbase" in argv
    assert "--architectures=amd64" in argv
    assert "--format=tar" in argv
    assert "--skip=output/dev" in argv
    assert f"--hook-dir={MERGED_USR_HOOK}" in argv
    assert not any(a.startswith("--dpkgopt") for a in argv)  # not slim
    assert not any(a.startswith("--include") for a in argv)
    # suite, output, then the sources: the suite, -updates, -security
    i = argv.index("bookworm")
    assert argv[i + 1] == "/out/x.tar"
    assert argv[i + 2 :] == [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]


def test_argv_slim_include_and_mirror() -> None:
    base = DebianBase(
        suite="trixie",
        slim=True,
        include=("curl", "ca-certificates"),
        mirror="http://mirror.example/debian",
        security_mirror=None,
        architecture="arm64",
    )
    argv = mmdebstrap_argv(base, Path("o.tar"), program="/opt/mmdebstrap")
    assert argv[0] == "/opt/mmdebstrap"
    assert "--dpkgopt=path-exclude=/usr/share/doc/*" in argv
    assert "--dpkgopt=path-include=/usr/share/doc/*/copyright" in argv
    assert "--dpkgopt=path-exclude=/usr/share/man/*" in argv
    assert "--dpkgopt=path-exclude=/usr/share/locale/*" in argv
    assert "--include=curl,ca-certificates" in argv
    assert "--architectures=arm64" in argv
    assert argv[-2:] == [
        "deb http://mirror.example/debian trixie main",
        "deb http://mirror.example/debian trixie-updates main",
    ]
    assert base.platform().architecture == "arm64"


def test_rolling_suite_has_no_updates_or_security() -> None:
    assert DebianBase(suite="sid").sources() == ("deb http://deb.debian.org/debian sid main",)


@pytest.mark.parametrize(
    ("base", "words"),
    [
        (DebianBase(suite="Bookworm!"), "invalid Debian suite"),
        (DebianBase(variant="tiny"), "unknown mmdebstrap variant"),
        (DebianBase(include=("bad pkg",)), "invalid package name"),
        (DebianBase(mirror="deb.debian.org/debian"), "invalid mirror"),
        (DebianBase(architecture="vax"), "unsupported architecture"),
    ],
)
def test_invalid_values_are_user_errors(base: DebianBase, words: str, tmp_path: Path) -> None:
    with pytest.raises(ForkliftError, match=words):
        bootstrap_debian(Store(tmp_path / "store"), "debian:x", base, mmdebstrap="/nonexistent")


def test_digest_reference_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ForkliftError, match="use NAME:TAG"):
        bootstrap_debian(Store(tmp_path / "s"), "debian@sha256:" + "a" * 64, DebianBase())


# ---- bootstrap with a stand-in mmdebstrap ----------------------------------------------------------------

FAKE = """#!/bin/sh
# Stand-in for mmdebstrap: record the call, insist on tar output without /dev, write the tarball.
echo "$*" >> {calls}
case " $* " in *" --format=tar "*) ;; *) echo "E: no --format=tar" >&2; exit 3;; esac
case " $* " in *" --skip=output/dev "*) ;; *) echo "E: no --skip=output/dev" >&2; exit 3;; esac
out=
for a in "$@"; do case "$a" in *.tar) out=$a;; esac; done
echo "I: automatically chosen mode: root"
echo "I: extracting archives..." >&2
cp {rootfs} "$out"
echo "I: success in 0.01 seconds"
"""

FAILING = """#!/bin/sh
i=0
while [ $i -lt 30 ]; do echo "I: step $i"; i=$((i+1)); done
echo "E: cannot reach the mirror" >&2
exit 25
"""


@pytest.fixture
def fake_mmdebstrap(tmp_path: Path, busybox_rootfs_tar: Path) -> tuple[Path, Path]:
    """(program, calls file): a stand-in for mmdebstrap on a directory meant for PATH."""
    require_tool("mmdebstrap")  # the merged-usr hook directory comes with the real package
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls"
    calls.write_text("")
    program = bindir / "mmdebstrap"
    program.write_text(FAKE.format(calls=calls, rootfs=busybox_rootfs_tar))
    program.chmod(0o755)
    return program, calls


def _layer_names(store: Store, digest: object) -> set[str]:
    img = load_image(store, str(digest))
    (layer,) = image_layers(img)
    with img.open_blob(layer) as blob, tarfile.open(fileobj=blob, mode="r|*") as tar:
        return {m.name.removeprefix("./") for m in tar}


@pytest.mark.e2e
def test_bootstrap_imports_once_then_keeps_the_name(
    tmp_path: Path, fake_mmdebstrap: tuple[Path, Path]
) -> None:
    program, calls = fake_mmdebstrap
    store = Store(tmp_path / "store")
    lines: list[str] = []
    first = bootstrap_debian(
        store, "debian:test", DebianBase(slim=True), mmdebstrap=str(program), on_output=lines.append
    )
    assert first.created and first.name == "docker.io/library/debian:test"
    assert store.get_ref("docker.io/library/debian:test") == first.digest
    assert "I: extracting archives..." in lines  # stderr is passed on too
    assert "--dpkgopt=path-exclude=/usr/share/man/*" in calls.read_text()
    assert '> "$1"/etc/apt/apt.conf.d/docker-clean' in calls.read_text()
    img = load_image(store, first.digest)
    config = image_config(img)
    assert config.config.env == (PATH_ENV,)
    assert config.config.cmd == ("bash",)
    assert (config.os, config.architecture) == ("linux", "amd64")
    assert "bin/busybox" in _layer_names(store, first.digest)
    # The temporary tarball is gone.
    assert not list((tmp_path / "store").glob("bootstrap-*"))

    again = bootstrap_debian(store, "debian:test", DebianBase(slim=True), mmdebstrap=str(program))
    assert not again.created and again.digest == first.digest
    assert calls.read_text().count("--variant=") == 1  # mmdebstrap did not run again

    forced = bootstrap_debian(
        store, "debian:test", DebianBase(slim=True), mmdebstrap=str(program), force=True
    )
    assert forced.created
    assert calls.read_text().count("--variant=") == 2


@pytest.mark.e2e
def test_failure_names_the_last_lines(tmp_path: Path, fake_mmdebstrap: tuple[Path, Path]) -> None:
    program, _ = fake_mmdebstrap
    program.write_text(FAILING)
    store = Store(tmp_path / "store")
    with pytest.raises(ForkliftError) as info:
        bootstrap_debian(store, "debian:test", DebianBase(), mmdebstrap=str(program))
    text = info.value.render()
    assert "mmdebstrap failed (exit status 25)" in text
    assert "E: cannot reach the mirror" in text
    assert "I: step 29" in text and "I: step 2\n" not in text  # only the tail
    assert store.get_ref("docker.io/library/debian:test") is None
    assert not list((tmp_path / "store").glob("bootstrap-*"))


def _forklift(root: Path, *args: str, path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path}
    return subprocess.run(
        [sys.executable, "-m", "forklift.cli.main", "--root", str(root), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.e2e
def test_cli_bootstrap_then_already_exists(tmp_path: Path, fake_mmdebstrap: tuple[Path, Path]) -> None:
    program, calls = fake_mmdebstrap
    path = f"{program.parent}:{os.environ.get('PATH', '')}"
    first = _forklift(
        tmp_path / "store", "bootstrap", "debian:bookworm-slim", "--slim", "--include", "curl gcc", path=path
    )
    assert first.returncode == 0, first.stderr
    assert "bootstrapping debian:bookworm-slim" in first.stderr
    assert "debian:bookworm-slim: sha256:" in first.stderr
    assert "--include=curl,gcc" in calls.read_text()
    second = _forklift(tmp_path / "store", "bootstrap", "debian:bookworm-slim", path=path)
    assert second.returncode == 0
    assert "already exists" in second.stderr and "bootstrapping" not in second.stderr
    listed = _forklift(tmp_path / "store", "images", path=path)
    assert "bookworm-slim" in listed.stdout


@pytest.mark.e2e
def test_cli_source_date_epoch_sets_the_creation_time(
    tmp_path: Path, fake_mmdebstrap: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    program, _ = fake_mmdebstrap
    env_path = f"{program.parent}:{os.environ.get('PATH', '')}"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    made = _forklift(tmp_path / "store", "bootstrap", "-q", "debian:epoch", path=env_path)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().startswith("sha256:")  # -q: only the digest
    config = image_config(load_image(Store(tmp_path / "store"), "docker.io/library/debian:epoch"))
    assert config.created == "2023-11-14T22:13:20Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    bad = _forklift(tmp_path / "store", "bootstrap", "--force", "debian:epoch", path=env_path)
    assert bad.returncode == 1
    assert "SOURCE_DATE_EPOCH='yesterday' is not a number" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.e2e
def test_cli_errors_without_traceback(tmp_path: Path) -> None:
    missing = _forklift(tmp_path / "store", "bootstrap", "debian:bookworm", path=str(tmp_path))
    assert missing.returncode == 1
    assert "mmdebstrap is not installed" in missing.stderr
    assert "hint: apt-get install mmdebstrap" in missing.stderr
    bad = _forklift(
        tmp_path / "store", "bootstrap", "debian:bookworm", "--variant", "tiny", path=str(tmp_path)
    )
    assert bad.returncode == 1 and "unknown mmdebstrap variant" in bad.stderr
    for result in (missing, bad):
        assert "Traceback" not in result.stderr


# ---- the real thing (needs the Debian mirror) -----------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.skipif(os.environ.get("FORKLIFT_NETWORK_TESTS") != "1", reason="needs the Debian mirror")
def test_real_mmdebstrap_slim_bookworm_is_reproducible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tool("mmdebstrap")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # mmdebstrap clamps file times to it
    digests = []
    for n in (1, 2):
        store = Store(tmp_path / f"store{n}")
        result = bootstrap_debian(
            store, "debian:bookworm-slim", DebianBase(slim=True), created="2023-11-14T22:13:20Z"
        )
        digests.append(result.digest)
    assert digests[0] == digests[1]  # same packages, same epoch: the same image, byte for byte
    names = _layer_names(store, result.digest)
    assert "etc/debian_version" in names
    assert "usr/bin/apt-get" in names
    # merged /usr by the hook, not by the usrmerge package (which pulls in the whole of perl)
    assert not [n for n in names if n.startswith(("usr/lib/usrmerge/", "usr/share/perl/"))]
    assert not [n for n in names if n.startswith("usr/share/man/") and not n.endswith("/")]
    assert not [n for n in names if n.startswith("dev/") and n != "dev/"]
    assert not [
        n for n in names if n.startswith("var/lib/apt/lists/") and n.endswith(("Packages", "Release"))
    ]
    img = load_image(store, result.digest)
    (layer,) = image_layers(img)
    with img.open_blob(layer) as blob, tarfile.open(fileobj=blob, mode="r|*") as tar:
        for member in tar:
            if member.name.removeprefix("./") == "etc/apt/apt.conf.d/docker-clean":
                clean = tar.extractfile(member)
                assert clean is not None
                assert b'Dir::Cache::pkgcache "";' in clean.read()
                assert member.mode == 0o644
                break
        else:
            pytest.fail("no /etc/apt/apt.conf.d/docker-clean in the image")
    assert json.loads(img.raw_config())["config"]["Cmd"] == ["bash"]
