"""``--cache-to`` and ``--cache-from`` specs (buildx syntax): where a build cache export goes or
comes from, checked before any work."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from forklift.errors import ForkliftError, ImageError
from forklift.records import record

if TYPE_CHECKING:
    from forklift.oci.compression import Compression

DEFAULT_LOCAL_TAG = "cache"

CacheMode = Literal["min", "max"]
CacheKind = Literal["registry", "local"]

# buildx attributes forklift accepts and has no use for (its export is always an OCI manifest).
_IGNORED_ATTRS = frozenset({"oci-mediatypes", "image-manifest", "compression-level", "force-compression"})
_COMPRESSION_NAMES: Mapping[str, Compression] = {"gzip": "gzip", "zstd": "zstd", "uncompressed": "none"}


@record(kw_only=True)
class CacheDestination:
    """Where ``--cache-to`` writes: a registry reference or a local OCI layout directory."""

    type: CacheKind
    ref: str | None = None  # registry: the reference the cache manifest is pushed to
    dest: Path | None = None  # local: the layout directory
    mode: CacheMode = "min"
    compression: Compression = "gzip"
    tag: str = DEFAULT_LOCAL_TAG  # local: the layout's tag for the cache manifest
    ignore_error: bool = False  # a failed export is a warning, not a failed build


@record(kw_only=True)
class CacheSource:
    """Where ``--cache-from`` reads: a registry reference or a local OCI layout directory."""

    type: CacheKind
    ref: str | None = None
    src: Path | None = None
    tag: str = DEFAULT_LOCAL_TAG  # local: which tag of the layout to read
    digest: str | None = None  # local: the manifest digest to read instead of the tag


def _split_spec(text: str, flag: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise ForkliftError(f"invalid {flag} {text!r}: {part!r} is not key=value")
        key = key.strip().lower()
        if key in fields:
            raise ForkliftError(f"invalid {flag} {text!r}: {key} is given twice")
        fields[key] = value.strip()
    return fields


def _bool(value: str, flag: str, key: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes", ""):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ForkliftError(f"invalid {flag}: {key}={value!r} is not true or false")


def _check_ref(ref: str, flag: str) -> str:
    from forklift.oci.registry.reference import parse_reference

    try:
        parse_reference(ref)
    except ImageError as err:
        raise ForkliftError(f"invalid {flag}: ref={ref!r}: {err.message}") from None
    return ref


def _check_tag(tag: str, flag: str) -> str:
    import re

    if not re.fullmatch(r"[\w][\w.-]{0,127}", tag):
        raise ForkliftError(f"invalid {flag}: tag={tag!r} is not a valid tag")
    return tag


def parse_cache_spec(text: str, *, export: bool) -> CacheDestination | CacheSource:
    """Parse a buildx-style cache spec: ``--cache-to`` when ``export``, else ``--cache-from``.

    ``type=registry,ref=REF[,mode=min|max][,compression=gzip|zstd|uncompressed][,ignore-error=true]``,
    ``type=local,dest=DIR[,mode=...][,tag=T]`` (export), ``type=local,src=DIR[,tag=T|digest=D]``
    (import). A bare ``REF`` means ``type=registry,ref=REF``. Raises ForkliftError for bad specs.
    """
    flag = "--cache-to" if export else "--cache-from"
    text = text.strip()
    if not text:
        raise ForkliftError(
            f"invalid {flag}: empty spec", hint="e.g. type=registry,ref=registry:5000/app:cache"
        )
    fields = {"type": "registry", "ref": text} if "=" not in text else _split_spec(text, flag)
    kind = fields.pop("type", "")
    if kind not in ("registry", "local"):
        hint = "type=registry,ref=REF or type=local," + ("dest=DIR" if export else "src=DIR")
        if not kind:
            raise ForkliftError(f"invalid {flag} {text!r}: type= is missing", hint=hint)
        raise ForkliftError(f"unsupported {flag} type {kind!r}", hint=hint)
    for key in _IGNORED_ATTRS:
        fields.pop(key, None)
    result: CacheDestination | CacheSource
    if export:
        result = _parse_destination(kind, fields, flag)
    else:
        result = _parse_source(kind, fields, flag)
    if fields:
        raise ForkliftError(
            f"invalid {flag} {text!r}: unknown attribute{'s' if len(fields) > 1 else ''} "
            + ", ".join(sorted(fields))
        )
    return result


def _parse_destination(kind: str, fields: dict[str, str], flag: str) -> CacheDestination:
    mode = fields.pop("mode", "min").lower()
    if mode not in ("min", "max"):
        raise ForkliftError(f"invalid {flag}: mode={mode!r} (min or max)")
    compression_name = fields.pop("compression", "gzip").lower()
    if compression_name not in _COMPRESSION_NAMES:
        raise ForkliftError(f"invalid {flag}: compression={compression_name!r} (gzip, zstd or uncompressed)")
    ignore_error = _bool(fields.pop("ignore-error", "false"), flag, "ignore-error")
    common: dict[str, Any] = {
        "mode": mode,
        "compression": _COMPRESSION_NAMES[compression_name],
        "ignore_error": ignore_error,
    }
    if kind == "registry":
        ref = fields.pop("ref", "")
        if not ref:
            raise ForkliftError(f"invalid {flag}: type=registry needs ref=REF")
        return CacheDestination(type="registry", ref=_check_ref(ref, flag), **common)
    dest = fields.pop("dest", "")
    if not dest:
        raise ForkliftError(f"invalid {flag}: type=local needs dest=DIR")
    tag = _check_tag(fields.pop("tag", DEFAULT_LOCAL_TAG), flag)
    return CacheDestination(type="local", dest=Path(dest), tag=tag, **common)


def _parse_source(kind: str, fields: dict[str, str], flag: str) -> CacheSource:
    if kind == "registry":
        ref = fields.pop("ref", "")
        if not ref:
            raise ForkliftError(f"invalid {flag}: type=registry needs ref=REF")
        return CacheSource(type="registry", ref=_check_ref(ref, flag))
    src = fields.pop("src", "")
    if not src:
        raise ForkliftError(f"invalid {flag}: type=local needs src=DIR")
    tag = _check_tag(fields.pop("tag", DEFAULT_LOCAL_TAG), flag)
    digest = fields.pop("digest", None)
    if digest is not None:
        from forklift.oci.model import Digest  # the image model only when a digest is given

        try:
            Digest.parse(digest)
        except ImageError:
            raise ForkliftError(f"invalid {flag}: digest={digest!r} is not a digest") from None
    return CacheSource(type="local", src=Path(src), tag=tag, digest=digest)


def parse_cache_to(text: str) -> CacheDestination:
    """``parse_cache_spec(text, export=True)``, typed as a destination."""
    result = parse_cache_spec(text, export=True)
    assert isinstance(result, CacheDestination)
    return result


def parse_cache_from(text: str) -> CacheSource:
    """``parse_cache_spec(text, export=False)``, typed as a source."""
    result = parse_cache_spec(text, export=False)
    assert isinstance(result, CacheSource)
    return result
