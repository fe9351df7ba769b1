"""``--allow``: buildx's entitlements parsed, and which devices they let a RUN use."""

from __future__ import annotations

from pathlib import Path

import pytest

from forklift.cli.main import main
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


def test_cli_takes_allow_and_cdi_spec_dirs_and_refuses_an_unknown_entitlement_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["build", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--allow ENTITLEMENT" in text and "security.insecure" in text and "--cdi-spec-dir" in text
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    with pytest.raises(SystemExit) as exited:
        main(["--root", str(tmp_path / "store"), "build", "--allow", "security.insecur", str(tmp_path)])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown entitlement security.insecur") and "Traceback" not in err
    assert "did you mean security.insecure" in err
    assert not (tmp_path / "store" / "blobs").exists()
