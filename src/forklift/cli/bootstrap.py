"""``forklift bootstrap NAME:TAG``: a Debian base image from Debian packages (mmdebstrap), no registry."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import click

from forklift.errors import ForkliftError


def _packages(text: str | None) -> tuple[str, ...]:
    """``--include a,b c`` -> (a, b, c): commas or spaces, as mmdebstrap takes them."""
    if not text:
        return ()
    return tuple(p for p in text.replace(",", " ").split() if p)


def _epoch_time() -> str | None:
    """The image creation time from SOURCE_DATE_EPOCH (RFC 3339, UTC), or None when unset."""
    text = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise ForkliftError(f"SOURCE_DATE_EPOCH={text!r} is not a number of seconds")
    when = datetime.datetime.fromtimestamp(int(text), datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@click.command("bootstrap")
@click.argument("name")
@click.option("--suite", default="bookworm", show_default=True, help="Debian suite (bookworm, trixie, ...).")
@click.option(
    "--variant", default="minbase", show_default=True, help="mmdebstrap package set (minbase, buildd, ...)."
)
@click.option("--slim", is_flag=True, help="Leave out docs, man pages and locales, like debian:*-slim.")
@click.option("--include", "include", default=None, metavar="PKG,...", help="Extra packages to install.")
@click.option("--mirror", default=None, metavar="URL", help="Debian mirror (default deb.debian.org).")
@click.option(
    "--security-mirror",
    default=None,
    metavar="URL",
    help="Security mirror (default deb.debian.org/debian-security; 'none' leaves it out).",
)
@click.option("--platform", default=None, metavar="linux/ARCH", help="Platform (default: this machine's).")
@click.option("--force", is_flag=True, help="Rebuild even if NAME:TAG exists.")
@click.option("-q", "--quiet", is_flag=True, help="Do not show mmdebstrap's output; print only the digest.")
@click.pass_obj
def bootstrap_command(
    obj: Any,
    name: str,
    suite: str,
    variant: str,
    slim: bool,
    include: str | None,
    mirror: str | None,
    security_mirror: str | None,
    platform: str | None,
    force: bool,
    quiet: bool,
) -> None:
    """Make the base image NAME:TAG from Debian packages with mmdebstrap (no registry needed).

    \b
    forklift bootstrap debian:bookworm
    forklift bootstrap debian:bookworm-slim --slim
    forklift bootstrap buildpack:bookworm --include gcc,libc6-dev

    An existing NAME:TAG is kept (say --force to rebuild it). With SOURCE_DATE_EPOCH set, file
    times and the image's creation time come from it (mmdebstrap reads it too).
    """
    from forklift.bases.debian import (
        DEFAULT_MIRROR,
        DEFAULT_SECURITY_MIRROR,
        DebianBase,
        bootstrap_debian,
        canonical_name,
        debian_architecture,
    )
    from forklift.cli.images import human_size
    from forklift.oci.image import image_size, load_image
    from forklift.oci.model import Platform
    from forklift.oci.registry.reference import familiar_name
    from forklift.oci.store import Store

    plat = Platform.parse(platform) if platform else Platform.host()
    if plat.os != "linux":
        raise ForkliftError(
            f"cannot bootstrap a Debian image for {plat.os}", hint="use --platform linux/ARCH"
        )
    security: str | None = security_mirror or DEFAULT_SECURITY_MIRROR
    if security_mirror is not None and security_mirror.lower() == "none":
        security = None
    base = DebianBase(
        suite=suite,
        variant=variant,
        slim=slim,
        include=_packages(include),
        mirror=(mirror or DEFAULT_MIRROR).rstrip("/"),
        security_mirror=security.rstrip("/") if security else None,
        architecture=debian_architecture(plat),
    )
    base.validate()
    root: Path = obj.root
    store = Store(root)

    def show(line: str) -> None:
        # mmdebstrap's own I:/W:/E: lines tell the story; apt's and dpkg's chatter would bury it
        # (a failure still shows the last lines of everything).
        if line[:2] in ("I:", "W:", "E:"):
            click.echo(click.style(f"  {line}", dim=True), err=True)

    if not quiet and (force or store.get_ref(canonical_name(name)) is None):
        click.echo(f"bootstrapping {name}: {base.describe()} from {base.mirror}", err=True)
    result = bootstrap_debian(
        store, name, base, force=force, on_output=None if quiet else show, created=_epoch_time()
    )
    shown = familiar_name(result.name)
    if quiet:
        click.echo(str(result.digest))
        return
    if not result.created:
        click.echo(f"{shown} already exists ({result.digest}); --force rebuilds it", err=True)
        return
    size = image_size(load_image(store, result.digest))
    click.echo(
        f"{shown}: {result.digest} ({human_size(size)} compressed) in {result.seconds:.1f}s",
        err=True,
    )
