"""``forklift pull``, ``push``, ``login`` and ``logout``: the registry commands.

Credentials are kept where docker keeps them (``$DOCKER_CONFIG/config.json`` or
``~/.docker/config.json``), so docker and forklift logins are shared.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from forklift.errors import ForkliftError
from forklift.oci.model import Platform
from forklift.oci.registry.auth import (
    Credentials,
    default_docker_config,
    erase_credentials,
    store_credentials,
)
from forklift.oci.registry.client import RegistryClient, RegistryOptions
from forklift.oci.registry.reference import DOCKER_HUB
from forklift.oci.registry.transfer import pull_image, push_image
from forklift.oci.store import Store

_insecure = click.option(
    "--insecure-registry",
    "insecure",
    multiple=True,
    metavar="HOST",
    help="Speak plain HTTP to HOST (localhost and 127.0.0.1 always are). Repeatable.",
)


def _options(insecure: tuple[str, ...], chunk_size: int | None = None) -> RegistryOptions:
    return RegistryOptions(insecure_registries=frozenset(insecure), chunk_size=chunk_size)


@click.command("pull")
@click.argument("reference")
@click.option("--platform", default=None, metavar="OS/ARCH[/VARIANT]", help="Platform to pull from an index.")
@_insecure
@click.option("-q", "--quiet", is_flag=True, help="Print only the manifest digest.")
@click.pass_obj
def pull_command(
    obj: object, reference: str, platform: str | None, insecure: tuple[str, ...], quiet: bool
) -> None:
    """Pull an image from a registry into the local store."""
    store = Store(_root(obj))
    result = pull_image(
        store,
        reference,
        platform=Platform.parse(platform) if platform else None,
        options=_options(insecure),
    )
    if quiet:
        click.echo(str(result.manifest_digest))
        return
    click.echo(f"{result.name}: {result.blobs_fetched} blob(s) fetched")
    click.echo(f"Digest: {result.manifest_digest}")


@click.command("push")
@click.argument("name")
@click.argument("destination", required=False)
@click.option(
    "--format",
    "media_types",
    type=click.Choice(["oci", "docker"]),
    default=None,
    help="Media types of the pushed manifest (default: as stored).",
)
@click.option(
    "--compression",
    type=click.Choice(["gzip", "zstd", "none"]),
    default="gzip",
    show_default=True,
    help="Compression for layers the store keeps uncompressed.",
)
@click.option("--chunk-size", type=int, default=None, metavar="BYTES", help="Upload blobs in chunks.")
@click.option("--mount-from", multiple=True, metavar="REPO", help="A repository that may hold the blobs.")
@_insecure
@click.option("-q", "--quiet", is_flag=True, help="Print only the pushed digest.")
@click.pass_obj
def push_command(
    obj: object,
    name: str,
    destination: str | None,
    media_types: str | None,
    compression: str,
    chunk_size: int | None,
    mount_from: tuple[str, ...],
    insecure: tuple[str, ...],
    quiet: bool,
) -> None:
    """Push the stored image NAME to a registry (as DESTINATION when given)."""
    store = Store(_root(obj))
    result = push_image(
        store,
        name,
        destination,
        media_types="docker" if media_types == "docker" else "oci" if media_types == "oci" else None,
        compression="zstd" if compression == "zstd" else "none" if compression == "none" else "gzip",
        mount_from=mount_from,
        options=_options(insecure, chunk_size),
    )
    if quiet:
        click.echo(str(result.digest))
        return
    counts = f"{result.uploaded} uploaded, {result.mounted} mounted, {result.existing} already there"
    click.echo(f"{result.name}: {counts}")
    click.echo(f"Digest: {result.digest}")


@click.command("login")
@click.argument("server", required=False, default=DOCKER_HUB)
@click.option("-u", "--username", prompt=True, help="User name.")
@click.option("-p", "--password", default=None, help="Password (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@_insecure
def login_command(
    server: str, username: str, password: str | None, password_stdin: bool, insecure: tuple[str, ...]
) -> None:
    """Check credentials against a registry and store them (docker's config file)."""
    if password_stdin:
        if password is not None:
            raise ForkliftError("--password and --password-stdin are mutually exclusive")
        password = sys.stdin.read().rstrip("\r\n")
    elif password is None:
        password = click.prompt("Password", hide_input=True)
    credentials = Credentials(username=username, password=password or "")
    with RegistryClient(server, credentials=credentials, options=_options(insecure)) as client:
        client.check()
    config = default_docker_config()
    store_credentials(server, credentials, config_path=config)
    click.echo(f"Login Succeeded (credentials saved in {config})")


@click.command("logout")
@click.argument("server", required=False, default=DOCKER_HUB)
def logout_command(server: str) -> None:
    """Forget the stored credentials for a registry."""
    if erase_credentials(server, config_path=default_docker_config()):
        click.echo(f"Removed login credentials for {server}")
    else:
        click.echo(f"Not logged in to {server}")


def _root(obj: object) -> Path:
    root = getattr(obj, "root", None)
    if not isinstance(root, Path):
        raise click.UsageError("no store root (run through the forklift command)")
    return root
