"""The image commands: images, inspect, history, tag, rmi, save, load, import, prune.

Names are accepted and shown as Docker shows them (``busybox:latest`` for
``docker.io/library/busybox:latest``); an image can also be named by its ID (the config digest, or a
prefix of it as ``forklift images`` shows it) or by its manifest digest.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from forklift.errors import ImageError, did_you_mean
from forklift.oci.archive import import_rootfs, load_bundle, write_archive
from forklift.oci.convert import compress_layers
from forklift.oci.image import (
    Image,
    StoreImage,
    history_with_layers,
    image_config,
    image_digest,
    image_id,
    image_manifest,
    image_size,
    load_image,
)
from forklift.oci.layout import write_layout
from forklift.oci.model import Digest, Platform
from forklift.oci.registry.reference import familiar_name, parse_reference
from forklift.oci.store import Store
from forklift.oci.validate import problems


def _store(obj: Any) -> Store:
    root: Path = obj.root
    return Store(root)


# ---- looking images up ---------------------------------------------------------------------------------


def _images_by_ref(store: Store) -> list[tuple[str, Digest, StoreImage | None]]:
    """Every reference with the image it resolves to on this platform (None when it cannot)."""
    out: list[tuple[str, Digest, StoreImage | None]] = []
    for name, digest in store.list_refs().items():
        try:
            img: StoreImage | None = load_image(store, digest)
        except ImageError:
            img = None
        out.append((name, digest, img))
    return out


def _find(store: Store, text: str, *, platform: Platform | None = None) -> tuple[str | None, StoreImage]:
    """(canonical name, image) for a name; (None, image) for an image ID (or a unique prefix of one,
    as ``forklift images`` shows it) or a manifest digest. A name wins over an ID prefix, as in Docker."""
    ref = None
    with contextlib.suppress(ImageError):
        ref = parse_reference(text)
    if ref is not None and store.get_ref(str(ref)) is not None:
        return str(ref), load_image(store, str(ref), platform=platform)
    hexpart = text.removeprefix("sha256:")
    if len(hexpart) >= 4 and all(c in "0123456789abcdef" for c in hexpart):
        if text.startswith("sha256:") and len(hexpart) == 64 and store.has(Digest.parse(text)):
            with contextlib.suppress(ImageError):  # else a config digest (image ID): looked up below
                return None, load_image(store, text, platform=platform)
        matches = {
            img.digest: img
            for _, _, img in _images_by_ref(store)
            if img is not None and image_id(img).hex.startswith(hexpart)
        }
        if len(matches) > 1:
            raise ImageError(f"image ID {text} is ambiguous: it matches {len(matches)} images")
        if matches:
            return None, next(iter(matches.values()))
    if ref is None:
        parse_reference(text)  # raises the reason the name is invalid
    known = [familiar_name(n) for n in store.list_refs()]
    hint = did_you_mean(ref.familiar(), known) if ref is not None else None
    raise ImageError(f"no such image: {text}", hint=hint)


# ---- formatting ----------------------------------------------------------------------------------------


def human_size(n: int) -> str:
    """Sizes as Docker prints them: decimal units, three significant digits (``4.26MB``)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.3g}{unit}" if unit != "B" else f"{n}B"
        size /= 1000
    raise AssertionError("unreachable")


def human_since(created: str | None, now: datetime.datetime | None = None) -> str:
    """``3 days ago`` from an RFC 3339 timestamp; ``N/A`` when absent or unreadable."""
    if not created:
        return "N/A"
    text = created.replace("Z", "+00:00")
    if "." in text:  # Python reads at most microseconds; Go writes nanoseconds
        head, _, rest = text.partition(".")
        digits = re.match(r"\d*", rest).group()  # type: ignore[union-attr]
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return "N/A"
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    seconds = ((now or datetime.datetime.now(datetime.UTC)) - when).total_seconds()
    if seconds < 0:
        return "in the future"
    return _human_duration(seconds) + " ago"


def _human_duration(seconds: float) -> str:
    # The steps of Docker's go-units HumanDuration, so columns read as `docker images` shows them.
    minutes = int(seconds // 60)
    hours = round(seconds / 3600)
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return "1 second" if int(seconds) == 1 else f"{int(seconds)} seconds"
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{hours // (24 * 365)} years"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["   ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _split_name(canonical: str) -> tuple[str, str]:
    ref = parse_reference(canonical, default_tag=None)
    return ref.familiar_repository, ref.tag or "<none>"


# ---- commands ------------------------------------------------------------------------------------------


@click.command("images")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--no-trunc", is_flag=True, help="Show full image IDs.")
@click.pass_obj
def images_command(obj: Any, quiet: bool, no_trunc: bool) -> None:
    """List images in the local store."""
    store = _store(obj)
    rows: list[list[str]] = []
    for name, _digest, img in _images_by_ref(store):
        repo, tag = _split_name(name)
        if img is None:
            rows.append([repo, tag, "<other platform>", "N/A", "N/A"])
            continue
        ident = str(image_id(img)) if no_trunc else image_id(img).short
        rows.append([repo, tag, ident, human_since(image_config(img).created), human_size(image_size(img))])
    if quiet:
        seen: list[str] = []
        for row in rows:
            if row[2] not in seen and not row[2].startswith("<"):
                seen.append(row[2])
        if seen:
            click.echo("\n".join(seen))
        return
    click.echo(_table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows))


def _inspect_data(store: Store, name: str | None, img: Image) -> dict[str, Any]:
    digest = Digest.of(img.raw_manifest())
    tags = [familiar_name(n) for n, d in store.list_refs().items() if d == digest or n == name]
    return {
        "Id": str(image_id(img)),
        "RepoTags": sorted(set(tags)),
        "Digest": str(digest),
        "MediaType": image_manifest(img).media_type,
        "Size": image_size(img),
        "Manifest": json.loads(img.raw_manifest()),
        "Config": json.loads(img.raw_config()),
    }


@click.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Output format.")
@click.option("--platform", default=None, metavar="OS/ARCH[/VARIANT]", help="Platform to show from an index.")
@click.option("--check", is_flag=True, help="Also check every invariant, reading every layer.")
@click.pass_obj
def inspect_command(obj: Any, names: tuple[str, ...], fmt: str, platform: str | None, check: bool) -> None:
    """Show an image's manifest and config."""
    store = _store(obj)
    plat = Platform.parse(platform) if platform else None
    results = []
    bad = False
    for text in names:
        name, img = _find(store, text, platform=plat)
        data = _inspect_data(store, name, img)
        if check:
            found = problems(img, check_diff_ids=True)
            data["Problems"] = found
            bad = bad or bool(found)
        results.append((data, img))
    if fmt == "json":
        click.echo(json.dumps([data for data, _ in results], indent=2))
    else:
        for data, img in results:
            cfg = data["Config"]
            run = cfg.get("config") or {}
            lines = [
                f"Name:          {', '.join(data['RepoTags']) or '<none>'}",
                f"ID:            {data['Id']}",
                f"Digest:        {data['Digest']}",
                f"Media type:    {data['MediaType']}",
                f"Platform:      {image_config(img).platform}",
                f"Created:       {cfg.get('created', 'N/A')}",
                f"Size:          {human_size(data['Size'])}",
                f"Layers:        {len(data['Manifest'].get('layers', []))}",
            ]
            for key in ("Entrypoint", "Cmd", "WorkingDir", "User", "Env", "ExposedPorts", "Labels"):
                if run.get(key):
                    lines.append(f"{key + ':':<15}{json.dumps(run[key])}")
            if "Problems" in data:
                lines.append("Check:         " + ("; ".join(data["Problems"]) or "ok"))
            click.echo("\n".join(lines))
    if bad:
        raise ImageError("the image failed its checks")


@click.command("history")
@click.argument("name")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the CREATED BY column.")
@click.option("-q", "--quiet", is_flag=True, help="Only show layer digests.")
@click.pass_obj
def history_command(obj: Any, name: str, no_trunc: bool, quiet: bool) -> None:
    """Show an image's history, newest first, with the layer each step made."""
    _, img = _find(_store(obj), name)
    rows = []
    for entry, layer in reversed(history_with_layers(img)):
        ident = "<missing>" if layer is None else (str(layer.digest) if no_trunc else layer.digest.short)
        created_by = entry.created_by or ""
        if not no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        size = human_size(layer.size) if layer is not None else "0B"
        rows.append([ident, human_since(entry.created), created_by, size, entry.comment or ""])
    if quiet:
        click.echo("\n".join(r[0] for r in rows))
        return
    click.echo(_table(["LAYER", "CREATED", "CREATED BY", "SIZE", "COMMENT"], rows))


@click.command("tag")
@click.argument("source")
@click.argument("target")
@click.pass_obj
def tag_command(obj: Any, source: str, target: str) -> None:
    """Give the image SOURCE the additional name TARGET."""
    store = _store(obj)
    name, img = _find(store, source)
    ref = parse_reference(target)
    if ref.digest is not None:
        raise ImageError(f"cannot tag with a digest: {target}", hint="a tag is name:tag")
    # Keep what SOURCE's name points at (an index stays an index); an ID names the manifest.
    digest = store.get_ref(name) if name is not None else None
    store.set_ref(str(ref), digest or img.digest)


@click.command("rmi")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def rmi_command(obj: Any, names: tuple[str, ...]) -> None:
    """Remove image names; `forklift prune` then frees what nothing needs."""
    store = _store(obj)
    for text in names:
        with contextlib.suppress(ImageError):
            # A name is removed even when its image cannot be read (another platform, corrupt).
            if store.delete_ref(str(parse_reference(text))):
                click.echo(f"Untagged: {familiar_name(str(parse_reference(text)))}")
                continue
        _, img = _find(store, text)
        targets = [n for n, d in store.list_refs().items() if d == img.digest or _resolves_to(store, d, img)]
        for target in targets:
            if store.delete_ref(target):
                click.echo(f"Untagged: {familiar_name(target)}")


def _resolves_to(store: Store, digest: Digest, img: StoreImage) -> bool:
    try:
        return load_image(store, digest).digest == img.digest
    except ImageError:
        return False


@click.command("save")
@click.argument("names", nargs=-1, required=True)
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), required=True, help="File or directory to write."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["docker", "oci"]),
    default="docker",
    help="docker: a docker-archive tar (docker load reads it); oci: an OCI layout (a directory, or a tar "
    "when OUTPUT ends in .tar).",
)
@click.option("--platform", default=None, metavar="OS/ARCH[/VARIANT]", help="Platform to save from an index.")
@click.option(
    "--compression",
    type=click.Choice(["keep", "gzip", "zstd"]),
    default="keep",
    help="Compress uncompressed layers (the compressed form is kept for next time); keep: as stored.",
)
@click.pass_obj
def save_command(
    obj: Any, names: tuple[str, ...], output: Path, fmt: str, platform: str | None, compression: str
) -> None:
    """Write images to a docker-archive or an OCI image layout."""
    store = _store(obj)
    plat = Platform.parse(platform) if platform else None
    with store.lease() as lease:
        found: list[tuple[str | None, Image]] = []
        for text in names:
            name, img = _find(store, text, platform=plat)
            if compression != "keep":
                found.append((name, compress_layers(store, img, compression, lease=lease)))  # type: ignore[arg-type]
            else:
                found.append((name, img))
        _save(found, output, fmt)
    click.echo(f"Saved {len(found)} image(s) to {output}")


def _save(found: list[tuple[str | None, Image]], output: Path, fmt: str) -> None:
    if fmt == "oci":
        write_layout(output, found, as_tar=output.suffix == ".tar")
    else:
        grouped: dict[Digest, tuple[list[str], Image]] = {}
        for name, img in found:
            entry = grouped.setdefault(image_digest(img), ([], img))
            if name is not None:
                entry[0].append(name)
        write_archive(output, list(grouped.values()))


@click.command("load")
@click.option(
    "-i",
    "--input",
    "path",
    type=click.Path(path_type=Path, exists=True),
    required=True,
    help="A docker-archive, or an OCI layout directory or tar.",
)
@click.option("-t", "--tag", default=None, help="Name for an image the input does not name.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing.")
@click.pass_obj
def load_command(obj: Any, path: Path, tag: str | None, quiet: bool) -> None:
    """Load images from a docker-archive or an OCI layout (detected from its content)."""
    if tag is not None:
        tag = str(parse_reference(tag))
    loaded = load_bundle(_store(obj), path, name=tag)
    if quiet:
        return
    for item in loaded:
        if item.name is not None:
            click.echo(f"Loaded image: {familiar_name(item.name)}")
        else:
            click.echo(f"Loaded image ID: {item.digest}")


@click.command("import")
@click.argument("rootfs", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.argument("name", required=False)
@click.option("--platform", default=None, metavar="OS/ARCH[/VARIANT]", help="Platform the image declares.")
@click.option(
    "--compression", type=click.Choice(["gzip", "zstd", "none"]), default="gzip", help="Layer compression."
)
@click.pass_obj
def import_command(obj: Any, rootfs: Path, name: str | None, platform: str | None, compression: str) -> None:
    """Make a one-layer image from a root filesystem tarball (like docker import)."""
    canonical = str(parse_reference(name)) if name else None
    digest = import_rootfs(
        _store(obj),
        rootfs,
        name=canonical,
        compression=compression,  # type: ignore[arg-type]
        platform=Platform.parse(platform) if platform else None,
    )
    click.echo(str(digest))


@click.command("prune")
@click.option("--cache", "drop_cache", is_flag=True, help="Also drop the build cache (step results).")
@click.option("--all", "drop_all", is_flag=True, help="Also drop the build cache and cache mounts.")
@click.pass_obj
def prune_command(obj: Any, drop_cache: bool, drop_all: bool) -> None:
    """Remove what no image name, cache entry or running build needs; say what that freed, per kind."""
    from forklift.execute.prune import prune_store

    report = prune_store(obj.root, cache=drop_cache or drop_all, cache_mounts=drop_all)
    nouns = {"blobs": "blob(s)", "snapshots": "snapshot(s)", "build cache": "build cache entry(ies)"}
    for kind in report.kinds:
        noun = nouns.get(kind.kind, kind.kind)
        click.echo(f"Deleted {kind.count} {noun}, {human_size(kind.freed_bytes)}")
    click.echo(f"Total reclaimed space: {human_size(report.freed_bytes)}")
