"""CDI for ``RUN --device``: spec parsing, BuildKit's name resolution, edits and the runtime config."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from forklift.runtime.base import DeviceNode, Hook, Mount, Process
from forklift.runtime.cdi import (
    CdiError,
    DeviceRequest,
    SpecDeviceNode,
    complete_node,
    find_devices,
    load_registry,
    parse_device_flag,
    registry_from_specs,
    resolve_devices,
    runtime_devices,
)
from forklift.runtime.oci import build_config

SPEC: dict[str, Any] = {
    "cdiVersion": "0.6.0",
    "kind": "vendor1.com/device",
    "annotations": {"org.mobyproject.buildkit.device.autoallow": True},
    "containerEdits": {"env": ["SPEC=1"]},
    "devices": [
        {"name": "foo", "containerEdits": {"env": ["FOO=injected"]}},
        {
            "name": "bar",
            "annotations": {"org.mobyproject.buildkit.device.class": "class1"},
            "containerEdits": {
                "env": ["BAR=injected"],
                "deviceNodes": [
                    {"path": "/dev/bar", "type": "c", "major": 1, "minor": 3, "permissions": "rw"}
                ],
                "mounts": [
                    {"hostPath": "/opt/lib", "containerPath": "/usr/lib/x", "options": ["ro", "rbind"]}
                ],
                "hooks": [{"hookName": "createContainer", "path": "/bin/hook", "args": ["hook", "x"]}],
                "additionalGids": [44],
            },
        },
        {"name": "baz", "annotations": {"org.mobyproject.buildkit.device.class": "class1"}},
    ],
}


def registry(*docs: dict[str, Any]) -> Any:
    return registry_from_specs((Path(f"/etc/cdi/spec{i}.json"), d) for i, d in enumerate(docs))


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("vendor1.com/device=foo", DeviceRequest("vendor1.com/device=foo")),
        ("vendor1.com/device=foo,required", DeviceRequest("vendor1.com/device=foo", True)),
        ("vendor1.com/device,required=false", DeviceRequest("vendor1.com/device", False)),
        ("name=vendor1.com/device=*,required=true", DeviceRequest("vendor1.com/device=*", True)),
    ],
)
def test_device_flag(flag: str, expected: DeviceRequest) -> None:
    assert parse_device_flag(flag) == expected


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("a.com/x=1,required=maybe", "invalid value for required"),
        ("a.com/x=1,b", "must be a key=value pair"),
        ("a.com/x=1,colour=red", "unexpected key 'colour'"),
        ("required", "no device name"),
    ],
)
def test_bad_device_flags(flag: str, message: str) -> None:
    with pytest.raises(CdiError, match=message):
        parse_device_flag(flag)


def test_names_resolve_as_buildkit_resolves_them() -> None:
    reg = registry(SPEC)
    names = lambda n: [d.qualified_name for d in find_devices(reg, n)]  # noqa: E731
    assert names("vendor1.com/device") == ["vendor1.com/device=bar"]  # the first, in sorted order
    assert names("vendor1.com/device=*") == [f"vendor1.com/device={n}" for n in ("bar", "baz", "foo")]
    assert names("vendor1.com/device=foo") == ["vendor1.com/device=foo"]
    assert names("vendor1.com/device=class1") == ["vendor1.com/device=bar", "vendor1.com/device=baz"]
    assert names("vendor1.com/device=nope") == [] and names("other.com/x") == []
    with pytest.raises(CdiError, match="invalid device"):
        find_devices(reg, "nokind")
    assert all(d.auto_allowed for d in reg.devices.values())


def test_resolution_merges_spec_and_device_edits_once() -> None:
    reg = registry(SPEC)
    got = resolve_devices(
        reg,
        [
            DeviceRequest("vendor1.com/device=foo"),
            DeviceRequest("vendor1.com/device=bar"),
            DeviceRequest("x.io/y"),
        ],
    )
    assert [d.qualified_name for d in got.devices] == ["vendor1.com/device=foo", "vendor1.com/device=bar"]
    assert got.edits.env == ("SPEC=1", "FOO=injected", "BAR=injected")  # spec edits once
    assert got.edits.env_pairs()[0] == ("SPEC", "1")
    assert got.missing_optional == ("x.io/y",)
    assert got.edits.mounts == (
        Mount(target="/usr/lib/x", type="bind", source="/opt/lib", options=("ro", "rbind")),
    )
    assert got.edits.hooks == (Hook(stage="createContainer", path="/bin/hook", args=("hook", "x")),)
    assert got.edits.additional_gids == (44,)
    assert runtime_devices(got.edits) == (
        DeviceNode(path="/dev/bar", type="c", major=1, minor=3, permissions="rw"),
    )
    with pytest.raises(CdiError, match=r'required device "x\.io/y" is not registered'):
        resolve_devices(reg, [DeviceRequest("x.io/y", required=True)])


def test_missing_numbers_come_from_the_host_device() -> None:
    node = complete_node(SpecDeviceNode(path="/dev/forklift-null", host_path="/dev/null"))
    st = os.stat("/dev/null")
    assert (node.type, node.major, node.minor) == ("c", os.major(st.st_rdev), os.minor(st.st_rdev))
    with pytest.raises(CdiError, match="is not a device"):
        complete_node(SpecDeviceNode(path="/dev/x", host_path="/etc/hostname"))


def test_bad_specs_are_reported() -> None:
    with pytest.raises(CdiError, match="kind is missing"):
        registry({"cdiVersion": "0.6.0", "devices": []})
    with pytest.raises(CdiError, match="invalid device name"):
        registry({"cdiVersion": "0.6.0", "kind": "a.com/b", "devices": [{"name": "-x"}]})
    with pytest.raises(CdiError, match="defined twice"):
        registry(SPEC, SPEC)


def test_load_registry_reads_json_later_directories_win(tmp_path: Path) -> None:
    low, high = tmp_path / "etc", tmp_path / "run"
    low.mkdir()
    high.mkdir()
    (low / "a.json").write_text(json.dumps(SPEC))
    other = {**SPEC, "devices": [{"name": "foo", "containerEdits": {"env": ["FOO=high"]}}]}
    (high / "b.json").write_text(json.dumps(other))
    (high / "c.yaml").write_text("cdiVersion: 0.6.0\n")
    (high / "ignored.txt").write_text("x")
    reg = load_registry([low, high, tmp_path / "absent"])
    assert reg.devices["vendor1.com/device=foo"].edits.env == ("FOO=high",)
    assert "vendor1.com/device=baz" in reg.devices
    assert len(reg.unreadable) == 1 and "c.yaml" in reg.unreadable[0]
    (high / "d.json").write_text("{")
    with pytest.raises(CdiError, match="not valid JSON"):
        load_registry([high])


def test_runtime_config_creates_and_allows_the_devices() -> None:
    dev = DeviceNode(path="/dev/forklift-zero", type="c", major=1, minor=5, file_mode=0o666)
    hook = Hook(stage="createContainer", path="/bin/true", args=("true",), timeout=5)
    config = build_config(
        Process(args=("x",), devices=(dev,), hooks=(hook,)), Path("/r"), (), bundle=Path("/b"), nofile=8
    )
    assert config["linux"]["devices"] == [
        {"path": "/dev/forklift-zero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o666}
    ]
    assert config["linux"]["resources"]["devices"] == [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    ]
    assert config["hooks"] == {"createContainer": [{"path": "/bin/true", "args": ["true"], "timeout": 5}]}
