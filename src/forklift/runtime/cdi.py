"""CDI (Container Device Interface) for ``RUN --device``: read specs, resolve names, gather edits.

A CDI spec (a JSON file in ``/etc/cdi`` or ``/var/run/cdi``, or the directories given with
``--cdi-spec-dir``) names a *kind* (``vendor.com/class``) and its devices; each device, and the
spec as a whole, carries ``containerEdits``: device nodes, environment variables, mounts, hooks
and additional groups. A fully qualified device name is ``vendor.com/class=name``.

``RUN --device=NAME[,required[=BOOL]]`` resolves as BuildKit resolves it:

* ``vendor.com/class``: the first device of that kind;
* ``vendor.com/class=*``: every device of that kind;
* ``vendor.com/class=name``: that device, or else every device of that kind whose
  ``org.mobyproject.buildkit.device.class`` annotation is ``name``.

A device that is not found is an error when required, else skipped with a warning (BuildKit's
default: not required). Later directories win over earlier ones for the same device; within one
directory a device defined twice is an error. YAML specs are read when their text is JSON (JSON
is YAML); other YAML is reported, since forklift has no YAML parser.

Everything here but ``load_registry`` (which reads the directories) is pure.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from forklift.errors import ForkliftError
from forklift.records import record
from forklift.runtime.base import DeviceNode, Hook, Mount

DEFAULT_SPEC_DIRS: tuple[Path, ...] = (Path("/etc/cdi"), Path("/var/run/cdi"))
CLASS_ANNOTATION = "org.mobyproject.buildkit.device.class"
AUTOALLOW_ANNOTATION = "org.mobyproject.buildkit.device.autoallow"
HOOK_STAGES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")

# CDI's name rules: vendor is a domain-like name, class and device names are plain identifiers.
_VENDOR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_CLASS = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?")
_DEVICE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.:-]*[A-Za-z0-9])?")


class CdiError(ForkliftError):
    """A CDI spec cannot be read, or a requested device is unknown or malformed."""


@record
class DeviceRequest:
    """One ``RUN --device`` flag: the name as written and whether the build needs it."""

    name: str
    required: bool = False


@record
class SpecDeviceNode:
    """A device node as a spec writes it: type and numbers may be missing (None), to be read from
    ``host_path`` on the host (``complete_node``)."""

    path: str
    host_path: str
    type: str | None = None
    major: int | None = None
    minor: int | None = None
    permissions: str = "rwm"
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None


@record
class ContainerEdits:
    """What a CDI device (or spec) changes in the container."""

    env: tuple[str, ...] = ()
    device_nodes: tuple[SpecDeviceNode, ...] = ()
    mounts: tuple[Mount, ...] = ()
    hooks: tuple[Hook, ...] = ()
    additional_gids: tuple[int, ...] = ()

    def __add__(self, other: ContainerEdits) -> ContainerEdits:
        return ContainerEdits(
            env=self.env + other.env,
            device_nodes=self.device_nodes + other.device_nodes,
            mounts=self.mounts + other.mounts,
            hooks=self.hooks + other.hooks,
            additional_gids=self.additional_gids + other.additional_gids,
        )

    def env_pairs(self) -> tuple[tuple[str, str], ...]:
        """``env`` as (name, value) pairs (an entry without ``=`` is an empty value)."""
        return tuple((k, v) for k, _, v in (e.partition("=") for e in self.env))


@record
class CdiDevice:
    """One device of a spec: its qualified name, annotations (spec's merged with its own) and edits."""

    qualified_name: str
    annotations: Mapping[str, str]
    edits: ContainerEdits
    spec_path: Path

    @property
    def kind(self) -> str:
        """``vendor.com/class``."""
        return self.qualified_name.partition("=")[0]

    @property
    def auto_allowed(self) -> bool:
        """Whether the spec or device says it may be used without ``--allow device``."""
        return self.annotations.get(AUTOALLOW_ANNOTATION, "").strip().lower() in ("1", "t", "true")


@record
class CdiRegistry:
    """Every device of the spec directories (qualified names in sorted order), plus each spec's
    own edits (applied once when any of its devices is used) and the files that could not be read."""

    devices: Mapping[str, CdiDevice] = field(default_factory=dict)
    spec_edits: Mapping[Path, ContainerEdits] = field(default_factory=dict)
    unreadable: tuple[str, ...] = ()

    def names(self) -> list[str]:
        """The qualified names, sorted (BuildKit's order for "the first device of a kind")."""
        return sorted(self.devices)


@record
class ResolvedDevices:
    """The devices a RUN gets, their merged edits, and the optional requests that found nothing."""

    devices: tuple[CdiDevice, ...]
    edits: ContainerEdits
    missing_optional: tuple[str, ...] = ()


def parse_device_flag(value: str) -> DeviceRequest:
    """``NAME[,required[=BOOL]]`` or ``name=NAME,...`` (BuildKit's csv form) -> a request."""
    name = ""
    required = False
    for raw in value.split(","):
        item = raw.strip()
        key, sep, val = item.partition("=")
        lowered = key.strip().lower()
        if not sep:
            if lowered == "required":
                required = True
            elif not name:
                name = item
            else:
                raise CdiError(f"invalid field '{item}' must be a key=value pair")
        elif lowered == "name":
            if name:
                raise CdiError(f"device name already set to {name}")
            name = val.strip()
        elif lowered == "required":
            required = _parse_bool(val, key)
        elif not name:
            name = item  # vendor.com/class=device
        else:
            raise CdiError(f"unexpected key '{key}' in '{item}'", hint="the keys are name and required")
    if not name:
        raise CdiError(f"--device={value}: no device name")
    return DeviceRequest(name=name, required=required)


def _parse_bool(value: str, key: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise CdiError(f"invalid value for {key}: {value}")


def split_kind(name: str) -> tuple[str, str]:
    """``vendor.com/class[=device]`` -> (kind, device or ""), checking the kind's parts."""
    kind, _, device = name.partition("=")
    vendor, slash, cls = kind.partition("/")
    if not slash or not _VENDOR.fullmatch(vendor) or not _CLASS.fullmatch(cls):
        raise CdiError(
            f'invalid device "{name}"', hint="a CDI device is vendor.com/class, vendor.com/class=NAME or =*"
        )
    return kind, device


def parse_spec(doc: Any, path: Path) -> tuple[str, list[CdiDevice], ContainerEdits]:
    """A decoded spec document -> (kind, its devices, the spec-level edits)."""
    where = str(path)
    if not isinstance(doc, dict):
        raise CdiError(f"CDI spec {where}: not an object")
    kind = doc.get("kind")
    if not isinstance(kind, str):
        raise CdiError(f"CDI spec {where}: kind is missing")
    split_kind(kind)
    if not isinstance(doc.get("cdiVersion"), str):
        raise CdiError(f"CDI spec {where}: cdiVersion is missing")
    spec_annotations = _string_map(doc.get("annotations"), where)
    raw_devices = doc.get("devices") or []
    if not isinstance(raw_devices, list):
        raise CdiError(f"CDI spec {where}: devices must be a list")
    devices: list[CdiDevice] = []
    for raw in raw_devices:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise CdiError(f"CDI spec {where}: a device has no name")
        name = raw["name"]
        if not _DEVICE.fullmatch(name):
            raise CdiError(f'CDI spec {where}: invalid device name "{name}"')
        annotations = {**spec_annotations, **_string_map(raw.get("annotations"), where)}
        edits = parse_edits(raw.get("containerEdits"), f"{where} ({name})")
        devices.append(CdiDevice(f"{kind}={name}", annotations, edits, path))
    return kind, devices, parse_edits(doc.get("containerEdits"), where)


def _string_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CdiError(f"CDI spec {where}: annotations must be an object")
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}


def parse_edits(value: Any, where: str) -> ContainerEdits:
    """A ``containerEdits`` object -> ContainerEdits (device nodes not yet completed from the host)."""
    if value is None:
        return ContainerEdits()
    if not isinstance(value, dict):
        raise CdiError(f"CDI spec {where}: containerEdits must be an object")
    env = tuple(str(e) for e in value.get("env") or ())
    nodes = tuple(_device_node(d, where) for d in value.get("deviceNodes") or ())
    mounts = tuple(_mount(m, where) for m in value.get("mounts") or ())
    hooks = tuple(_hook(h, where) for h in value.get("hooks") or ())
    gids = tuple(int(g) for g in value.get("additionalGids") or ())
    return ContainerEdits(env=env, device_nodes=nodes, mounts=mounts, hooks=hooks, additional_gids=gids)


def _device_node(raw: Any, where: str) -> SpecDeviceNode:
    if not isinstance(raw, dict) or not isinstance(raw.get("path"), str):
        raise CdiError(f"CDI spec {where}: a device node has no path")

    def number(key: str) -> int | None:
        value = raw.get(key)
        if value is None:
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise CdiError(f"CDI spec {where}: device node {raw['path']}: {key} is not a number") from None

    return SpecDeviceNode(
        path=raw["path"],
        host_path=str(raw.get("hostPath") or raw["path"]),
        type=str(raw["type"]) if raw.get("type") else None,
        major=number("major"),
        minor=number("minor"),
        permissions=str(raw.get("permissions") or "rwm"),
        file_mode=number("fileMode"),
        uid=number("uid"),
        gid=number("gid"),
    )


def complete_node(node: SpecDeviceNode) -> DeviceNode:
    """The runtime's device node: type and numbers read from the host device where the spec left
    them out (a ``u`` type, unbuffered character, is ``c``)."""
    kind, major, minor = node.type, node.major, node.minor
    if kind is None or major is None or minor is None:
        try:
            st = os.stat(node.host_path)
        except OSError as err:
            raise CdiError(f"CDI device node {node.host_path}: {err.strerror}") from err
        if stat.S_ISCHR(st.st_mode):
            found = "c"
        elif stat.S_ISBLK(st.st_mode):
            found = "b"
        elif stat.S_ISFIFO(st.st_mode):
            found = "p"
        else:
            raise CdiError(f"CDI device node {node.host_path} is not a device")
        kind = kind or found
        major = major if major is not None else os.major(st.st_rdev)
        minor = minor if minor is not None else os.minor(st.st_rdev)
    if kind == "u":
        kind = "c"  # unbuffered character device
    if kind not in ("c", "b", "p"):
        raise CdiError(f"CDI device node {node.path}: invalid type {node.type!r}")
    return DeviceNode(
        path=node.path,
        type=kind,
        major=major,
        minor=minor,
        permissions=node.permissions,
        file_mode=node.file_mode,
        uid=node.uid,
        gid=node.gid,
    )


def _mount(raw: Any, where: str) -> Mount:
    if not isinstance(raw, dict) or not raw.get("hostPath") or not raw.get("containerPath"):
        raise CdiError(f"CDI spec {where}: a mount needs hostPath and containerPath")
    options = tuple(str(o) for o in raw.get("options") or ())
    return Mount(
        target=str(raw["containerPath"]),
        type=str(raw.get("type") or "bind"),
        source=str(raw["hostPath"]),
        options=options,
    )


def _hook(raw: Any, where: str) -> Hook:
    if not isinstance(raw, dict) or not raw.get("path") or raw.get("hookName") not in HOOK_STAGES:
        raise CdiError(f"CDI spec {where}: a hook needs a path and a hookName ({', '.join(HOOK_STAGES)})")
    timeout = raw.get("timeout")
    return Hook(
        stage=str(raw["hookName"]),
        path=str(raw["path"]),
        args=tuple(str(a) for a in raw.get("args") or ()),
        env=tuple(str(e) for e in raw.get("env") or ()),
        timeout=int(timeout) if timeout is not None else None,
    )


def registry_from_specs(specs: Iterable[tuple[Path, Any]], unreadable: Iterable[str] = ()) -> CdiRegistry:
    """A registry from decoded specs in priority order (later wins over earlier for a device;
    within one directory, a device defined twice is an error)."""
    devices: dict[str, CdiDevice] = {}
    spec_edits: dict[Path, ContainerEdits] = {}
    for path, doc in specs:
        _, found, edits = parse_spec(doc, path)
        spec_edits[path] = edits
        for device in found:
            previous = devices.get(device.qualified_name)
            if previous is not None and previous.spec_path.parent == path.parent:
                raise CdiError(
                    f"CDI device {device.qualified_name} is defined twice: in {previous.spec_path} and {path}"
                )
            devices[device.qualified_name] = device
    return CdiRegistry(devices=devices, spec_edits=spec_edits, unreadable=tuple(unreadable))


def load_registry(dirs: Iterable[Path] = DEFAULT_SPEC_DIRS) -> CdiRegistry:
    """Read the ``*.json`` (and JSON-text ``*.yaml``) specs of ``dirs``, lowest priority first.

    A directory that does not exist is skipped; a spec that cannot be parsed is an error.
    """
    specs: list[tuple[Path, Any]] = []
    unreadable: list[str] = []
    for directory in dirs:
        try:
            entries = sorted(p for p in directory.iterdir() if p.suffix in (".json", ".yaml", ".yml"))
        except FileNotFoundError:
            continue
        except OSError as err:
            raise CdiError(f"cannot read the CDI spec directory {directory}: {err.strerror}") from err
        for path in entries:
            try:
                text = path.read_text()
            except OSError as err:
                raise CdiError(f"cannot read the CDI spec {path}: {err.strerror}") from err
            try:
                doc = json.loads(text)
            except ValueError as err:
                if path.suffix != ".json":
                    unreadable.append(f"{path} (YAML: only its JSON form is read)")
                    continue
                raise CdiError(f"CDI spec {path} is not valid JSON: {err}") from err
            specs.append((path, doc))
    return registry_from_specs(specs, unreadable)


def find_devices(registry: CdiRegistry, name: str) -> list[CdiDevice]:
    """The devices ``name`` stands for (BuildKit's rules; see the module docstring); may be empty."""
    kind, device = split_kind(name)
    of_kind = [registry.devices[n] for n in registry.names() if n.startswith(kind + "=")]
    if not device:
        return of_kind[:1]
    if device == "*":
        return of_kind
    exact = registry.devices.get(name)
    if exact is not None:
        return [exact]
    return [d for d in of_kind if d.annotations.get(CLASS_ANNOTATION) == device]


def resolve_devices(registry: CdiRegistry, requests: Iterable[DeviceRequest]) -> ResolvedDevices:
    """The devices and merged edits for ``requests``; a required request that finds nothing raises."""
    chosen: dict[str, CdiDevice] = {}
    missing: list[str] = []
    for request in requests:
        found = find_devices(registry, request.name)
        if not found:
            if request.required:
                hint = "CDI specs are read from " + ", ".join(
                    sorted({str(d.spec_path.parent) for d in registry.devices.values()}) or ["no directory"]
                )
                if registry.unreadable:
                    hint += "; not read: " + "; ".join(registry.unreadable)
                raise CdiError(f'required device "{request.name}" is not registered', hint=hint)
            missing.append(request.name)
        for device in found:
            chosen.setdefault(device.qualified_name, device)
    edits = ContainerEdits()
    used_specs: list[Path] = []
    for device in chosen.values():
        if device.spec_path not in used_specs:
            used_specs.append(device.spec_path)
            edits += registry.spec_edits.get(device.spec_path, ContainerEdits())
        edits += device.edits
    return ResolvedDevices(devices=tuple(chosen.values()), edits=edits, missing_optional=tuple(missing))


def runtime_devices(edits: ContainerEdits) -> tuple[DeviceNode, ...]:
    """The device nodes of ``edits`` for the runtime, completed from the host (reads the host)."""
    return tuple(complete_node(n) for n in edits.device_nodes)
