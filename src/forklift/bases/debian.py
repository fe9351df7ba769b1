"""Debian base images from Debian packages with mmdebstrap, imported as one-layer images.

There is no Docker Hub on many build machines, but a Debian package mirror usually is in reach.
mmdebstrap builds a minimal root filesystem straight into a tarball; the image library imports that
tarball as an image, so ``FROM debian:bookworm`` finds it in the store and never pulls.

What the image gets, as the official Debian images have it: the minbase package set with merged
/usr (the ``merged-usr`` hook, so ``usrmerge`` and its perl do not come along), no device nodes, no
apt lists or caches, ``PATH`` in the config and ``CMD ["bash"]``. ``slim`` adds the dpkg path
excludes that make debian:*-slim (docs except copyright files, man pages, info, locales); they go
into /etc/dpkg/dpkg.cfg.d inside the image, so packages installed later are slimmed too.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from forklift.errors import ForkliftError
from forklift.oci.archive import import_rootfs
from forklift.oci.model import ContainerConfig, Digest, Platform
from forklift.oci.registry.reference import parse_reference
from forklift.oci.store import Store
from forklift.records import record

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MERGED_USR_HOOK = Path("/usr/share/mmdebstrap/hooks/merged-usr")

# debian:*-slim's dpkg configuration (docs but copyright, man, info, locales and lint data).
SLIM_PATH_FILTERS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/linda/*",
    "path-exclude=/usr/share/lintian/overrides/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/man/*",
)

# apt settings the official Debian images carry in /etc/apt/apt.conf.d/docker-clean (same name, so a
# Dockerfile that removes it to keep downloaded packages in a cache mount works as with those): no
# binary package caches, and downloaded .debs removed after each run, so a `RUN apt-get install`
# layer holds only what was installed.
APT_CLEAN_NAME = "/etc/apt/apt.conf.d/docker-clean"
_APT_CLEAN_RM = (
    "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin"
)
APT_CLEAN_CONFIG = (
    "# Written by forklift bootstrap: keep image layers free of apt's caches (as Debian's images do).\n"
    f'DPkg::Post-Invoke {{ "{_APT_CLEAN_RM} || true"; }};\n'
    f'APT::Update::Post-Invoke {{ "{_APT_CLEAN_RM} || true"; }};\n'
    'Dir::Cache::pkgcache "";\n'
    'Dir::Cache::srcpkgcache "";\n'
)

# mmdebstrap's package-set variants.
VARIANTS = (
    "extract",
    "custom",
    "essential",
    "apt",
    "required",
    "minbase",
    "buildd",
    "important",
    "debootstrap",
    "standard",
)

# Suites without -updates and -security.
_ROLLING_SUITES = frozenset({"sid", "unstable", "experimental", "rc-buggy"})

# dpkg architecture -> (OCI architecture, OCI variant)
_ARCHITECTURES: dict[str, tuple[str, str | None]] = {
    "amd64": ("amd64", None),
    "arm64": ("arm64", None),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v5"),
    "i386": ("386", None),
    "ppc64el": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "mips64el": ("mips64le", None),
}

_SUITE_RE = re.compile(r"^[a-z][a-z0-9.-]*$")
_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.:=~-]*$")
_MIRROR_RE = re.compile(r"^(https?|file|mirror\+[a-z]+|copy|tor\+https?)://\S+$")

OutputSink = Callable[[str], None]


@record(kw_only=True)
class DebianBase:
    """What to bootstrap: a Debian suite and package set, where its packages come from, and for
    which architecture (dpkg's name: amd64, arm64, ...)."""

    suite: str = "bookworm"
    variant: str = "minbase"
    slim: bool = False
    include: tuple[str, ...] = ()
    mirror: str = DEFAULT_MIRROR
    security_mirror: str | None = DEFAULT_SECURITY_MIRROR
    architecture: str = "amd64"

    def validate(self) -> None:
        """Raise ForkliftError for a value mmdebstrap would reject or misread."""
        if not _SUITE_RE.match(self.suite):
            raise ForkliftError(f"invalid Debian suite {self.suite!r}", hint="for example bookworm or trixie")
        if self.variant not in VARIANTS:
            raise ForkliftError(
                f"unknown mmdebstrap variant {self.variant!r}", hint="one of " + ", ".join(VARIANTS)
            )
        for package in self.include:
            if not _PACKAGE_RE.match(package):
                raise ForkliftError(f"invalid package name {package!r} in --include")
        for mirror in (self.mirror, self.security_mirror):
            if mirror is not None and not _MIRROR_RE.match(mirror):
                raise ForkliftError(
                    f"invalid mirror {mirror!r}", hint="a URL such as http://deb.debian.org/debian"
                )
        if self.architecture not in _ARCHITECTURES:
            raise ForkliftError(
                f"unsupported architecture {self.architecture!r}",
                hint="one of " + ", ".join(sorted(_ARCHITECTURES)),
            )

    def sources(self) -> tuple[str, ...]:
        """The apt source lines: the suite, its -updates and -security (for released suites)."""
        lines = [f"deb {self.mirror} {self.suite} main"]
        if self.suite not in _ROLLING_SUITES:
            lines.append(f"deb {self.mirror} {self.suite}-updates main")
            if self.security_mirror is not None:
                lines.append(f"deb {self.security_mirror} {self.suite}-security main")
        return tuple(lines)

    def platform(self) -> Platform:
        """The OCI platform the image declares."""
        arch, variant = _ARCHITECTURES[self.architecture]
        return Platform(os="linux", architecture=arch, variant=variant)

    def describe(self) -> str:
        """A short human description: ``debian bookworm (minbase, slim, +curl) for linux/amd64``."""
        extras = [self.variant] + (["slim"] if self.slim else []) + [f"+{p}" for p in self.include]
        return f"debian {self.suite} ({', '.join(extras)}) for linux/{self.architecture}"

    def file_stem(self) -> str:
        """A file name for the root filesystem tarball (it shows in the image history's comment)."""
        return f"debian-{self.suite}-{self.variant}{'-slim' if self.slim else ''}"


@record
class BootstrapResult:
    """What ``bootstrap_debian`` did: ``created`` is False when the name existed and was kept."""

    name: str  # canonical reference
    digest: Digest  # manifest digest
    created: bool
    seconds: float


def debian_architecture(platform: Platform) -> str:
    """dpkg's architecture name for an OCI platform (``linux/amd64`` -> ``amd64``)."""
    for dpkg_arch, (arch, variant) in _ARCHITECTURES.items():
        if arch == platform.architecture and (platform.variant is None or platform.variant == variant):
            return dpkg_arch
    raise ForkliftError(f"no Debian architecture for {platform.architecture}")


def image_config_for(base: DebianBase) -> ContainerConfig:
    """The container config the official Debian images carry: PATH and ``CMD ["bash"]``."""
    return ContainerConfig(env=(f"PATH={IMAGE_PATH}",), cmd=("bash",))


def mmdebstrap_argv(base: DebianBase, output: Path, *, program: str = "mmdebstrap") -> list[str]:
    """The mmdebstrap command that writes ``base``'s root filesystem as a tarball to ``output``.

    The mode is left to mmdebstrap (root as root, else unshare). Tar output skips /dev's device
    nodes (``--skip=output/dev``): an image should not carry them, the runtime makes /dev.
    """
    argv = [
        program,
        f"--variant={base.variant}",
        f"--architectures={base.architecture}",
        "--format=tar",
        "--skip=output/dev",
        f"--hook-dir={MERGED_USR_HOOK}",
        '--aptopt=Acquire::Languages "none"',
    ]
    if base.slim:
        argv += [f"--dpkgopt={rule}" for rule in SLIM_PATH_FILTERS]
    if base.include:
        argv.append("--include=" + ",".join(base.include))
    # Images ship without package lists and apt's binary caches (apt-get update fetches them).
    argv.append('--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin')
    # Customize hooks run as `sh -c HOOK exec ROOTFS`; the config text travels quoted in the hook.
    argv.append(f'--customize-hook=printf %s {shlex.quote(APT_CLEAN_CONFIG)} > "$1"{APT_CLEAN_NAME}')
    argv += [base.suite, str(output), *base.sources()]
    return argv


def canonical_name(name: str) -> str:
    """The canonical reference for NAME:TAG (``debian:bookworm`` -> ``docker.io/library/debian:bookworm``)."""
    ref = parse_reference(name)
    if ref.digest is not None:
        raise ForkliftError(
            f"cannot bootstrap {name!r}: a digest names existing content", hint="use NAME:TAG"
        )
    return str(ref)


def bootstrap_debian(
    store: Store,
    name: str,
    base: DebianBase,
    *,
    force: bool = False,
    on_output: OutputSink | None = None,
    mmdebstrap: str | None = None,
    created: str | None = None,
) -> BootstrapResult:
    """Make the image ``name`` from Debian packages unless the store has it (or ``force``).

    mmdebstrap's output lines go to ``on_output`` as they come. Raises ForkliftError when
    mmdebstrap is missing or fails (with its last lines of output) or a value is invalid.
    """
    base.validate()
    canonical = canonical_name(name)
    existing = store.get_ref(canonical)
    if existing is not None and not force:
        return BootstrapResult(name=canonical, digest=existing, created=False, seconds=0.0)
    program = mmdebstrap or shutil.which("mmdebstrap")
    if program is None:
        raise ForkliftError(
            "mmdebstrap is not installed: forklift bootstrap builds base images with it",
            hint="apt-get install mmdebstrap (or run: bash scripts/setup.sh demo)",
        )
    if not MERGED_USR_HOOK.is_dir():
        raise ForkliftError(
            f"mmdebstrap's merged-usr hook is missing ({MERGED_USR_HOOK})",
            hint="install mmdebstrap 1.0 or later",
        )
    started = time.monotonic()
    # The tarball sits next to the store (same filesystem, often larger than /tmp).
    workdir = Path(tempfile.mkdtemp(prefix="bootstrap-", dir=store.root))
    try:
        tarball = workdir / f"{base.file_stem()}.tar"
        run_mmdebstrap(mmdebstrap_argv(base, tarball, program=program), on_output=on_output)
        digest = import_rootfs(
            store,
            tarball,
            name=canonical,
            platform=base.platform(),
            created=created,
            config=image_config_for(base),
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return BootstrapResult(name=canonical, digest=digest, created=True, seconds=time.monotonic() - started)


def _tool_env() -> dict[str, str]:
    """mmdebstrap's environment: the system directories first on PATH, because it runs helpers
    (``mmtarfilter`` through ``env python3``, apt, dpkg) that a venv or pyenv shim must not shadow,
    and a C locale so its messages are the ones people search for."""
    system = "/usr/sbin:/usr/bin:/sbin:/bin"
    rest = os.environ.get("PATH", "")
    return {**os.environ, "PATH": f"{system}:{rest}" if rest else system, "LC_ALL": "C.UTF-8"}


def run_mmdebstrap(argv: list[str], *, on_output: OutputSink | None = None, tail: int = 15) -> None:
    """Run mmdebstrap, passing each output line on; a failure becomes a ForkliftError with the last
    ``tail`` lines. The process is stopped if we are interrupted."""
    last: collections.deque[str] = collections.deque(maxlen=tail)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=_tool_env(),
        )
    except OSError as err:
        raise ForkliftError(f"cannot run {argv[0]}: {err.strerror or err}") from None
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            last.append(line)
            if on_output is not None:
                on_output(line)
        status = proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if status != 0:
        shown = "\n".join(f"  | {line}" for line in last) or "  | (no output)"
        raise ForkliftError(
            f"mmdebstrap failed (exit status {status}); its last lines:\n{shown}",
            hint="check the mirror (--mirror) is reachable; the command was: " + shlex.join(argv),
        )
