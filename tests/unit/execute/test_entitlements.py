"""``--allow``: buildx's entitlements parsed, and which devices they let a RUN use."""

from __future__ import annotations

import pytest

from forklift.errors import ForkliftError
from forklift.execute.options import Entitlements


def test_parse_each_entitlement() -> None:
    got = Entitlements.parse(["security.insecure", "network.host,device"])
    assert (got.security_insecure, got.network_host, got.all_devices) == (True, True, True)
    assert Entitlements.parse([]) == Entitlements()
    named = Entitlements.parse(["device=vendor.com/gpu=0", "device=vendor.com/gpu=1,alias=fast"])
    assert not named.all_devices
    assert dict(named.devices) == {"vendor.com/gpu=0": "vendor.com/gpu=0", "fast": "vendor.com/gpu=1"}
    assert named.device_name("fast") == "vendor.com/gpu=1" and named.device_name("x.io/y") == "x.io/y"
    assert named.flags() == ("device=vendor.com/gpu=1,alias=fast", "device=vendor.com/gpu=0")
    assert Entitlements.parse(named.flags()) == named


def test_unknown_entitlements_are_refused() -> None:
    with pytest.raises(ForkliftError, match=r"unknown entitlement security\.unsafe"):
        Entitlements.parse(["security.unsafe"])
    with pytest.raises(ForkliftError, match="unknown device config"):
        Entitlements.parse(["device=a.com/b=c,colour=red"])


def test_which_devices_are_allowed() -> None:
    assert Entitlements(all_devices=True).device_allowed("anything")
    named = Entitlements.parse(["device=vendor.com/gpu=0"])
    assert named.device_allowed("vendor.com/gpu=0")
    # A kind that resolves to the allowed device only is allowed; one that reaches others is not.
    assert named.device_allowed("vendor.com/gpu", ["vendor.com/gpu=0"])
    assert not named.device_allowed("vendor.com/gpu=*", ["vendor.com/gpu=0", "vendor.com/gpu=1"])
    assert not Entitlements().device_allowed("vendor.com/gpu=0", ["vendor.com/gpu=0"])
    assert not named.device_allowed("vendor.com/gpu=9", [])
