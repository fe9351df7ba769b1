"""Registry credentials and challenges: docker's config file, credential helpers, WWW-Authenticate.

Pure logic and files, no registry: these are fast unit tests (the flows against real registries are
in test_registry_client.py and test_registry_images.py).
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import httpx
import pytest

from forklift.oci.registry.auth import (
    DOCKER_HUB_CONFIG_KEY,
    Challenge,
    Credentials,
    config_key,
    erase_credentials,
    lookup_credentials,
    parse_www_authenticate,
    repository_of,
    store_credentials,
)
from forklift.oci.registry.client import is_plain_http
from forklift.oci.registry.errors import RegistryAuthError


def test_parse_bearer_challenge_with_quoted_commas_and_spaces() -> None:
    header = (
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:a/b:pull,push repository:c:pull"'
    )
    assert parse_www_authenticate(header) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.example.com/token",
                "service": "registry.example.com",
                "scope": "repository:a/b:pull,push repository:c:pull",
            },
        )
    ]


def test_parse_several_challenges_and_escapes() -> None:
    header = 'Basic realm="say \\"hi\\"", Bearer realm=https://t/token, service=x'
    assert parse_www_authenticate(header) == [
        Challenge("basic", {"realm": 'say "hi"'}),
        Challenge("bearer", {"realm": "https://t/token", "service": "x"}),
    ]
    assert parse_www_authenticate("") == []


def test_repository_of_api_urls() -> None:
    assert repository_of(httpx.URL("http://h/v2/a/b/c/blobs/sha256:00")) == "a/b/c"
    assert repository_of(httpx.URL("http://h/v2/lib/manifests/latest")) == "lib"
    assert repository_of(httpx.URL("http://h/v2/")) is None


def test_docker_hub_credentials_are_filed_under_its_historical_url() -> None:
    for name in ("docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/"):
        assert config_key(name) == DOCKER_HUB_CONFIG_KEY
    assert config_key("https://Registry.Example.com:5000/v2/") == "registry.example.com:5000"


def test_plain_http_only_for_loopback_and_named_hosts() -> None:
    assert is_plain_http("localhost:5000")
    assert is_plain_http("127.0.0.1:40000")
    assert is_plain_http("[::1]:5000")
    assert not is_plain_http("registry.example.com")
    assert is_plain_http("registry.lan:5000", {"registry.lan:5000"})
    assert is_plain_http("registry.lan:5000", {"registry.lan"})


def test_store_lookup_erase_round_trip_keeps_other_settings(tmp_path: Path) -> None:
    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"auths": {"other.io": {"auth": "eDp5"}}, "psFormat": "table"}))
    store_credentials("docker.io", Credentials("me", "pa:ss"), config_path=config)
    data = json.loads(config.read_text())
    assert data["psFormat"] == "table" and "other.io" in data["auths"]
    assert base64.b64decode(data["auths"][DOCKER_HUB_CONFIG_KEY]["auth"]) == b"me:pa:ss"
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600
    assert lookup_credentials("registry-1.docker.io", config_path=config) == Credentials("me", "pa:ss")
    assert lookup_credentials("other.io", config_path=config) == Credentials("x", "y")
    assert lookup_credentials("nowhere.io", config_path=config) is None
    assert erase_credentials("docker.io", config_path=config)
    assert not erase_credentials("docker.io", config_path=config)
    assert lookup_credentials("docker.io", config_path=config) is None


def test_missing_config_means_anonymous_and_corrupt_config_is_an_error(tmp_path: Path) -> None:
    assert lookup_credentials("docker.io", config_path=tmp_path / "absent.json") is None
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(RegistryAuthError, match="cannot read credentials"):
        lookup_credentials("docker.io", config_path=bad)


def test_identity_tokens_and_plain_username_password_entries(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "auths": {
                    "https://a.example.com/v2/": {"username": "u", "password": "p"},
                    "b.example.com": {"auth": base64.b64encode(b"u2:").decode(), "identitytoken": "tok"},
                }
            }
        )
    )
    assert lookup_credentials("a.example.com", config_path=config) == Credentials("u", "p")
    assert lookup_credentials("b.example.com", config_path=config) == Credentials("u2", "", "tok")


def fake_helper(bin_dir: Path, name: str, store_file: Path) -> None:
    """A docker-credential-<name> that keeps credentials in a JSON file (the helper protocol)."""
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(
        f"""#!/usr/bin/env python3
import json, sys
path = {str(store_file)!r}
try:
    data = json.load(open(path))
except FileNotFoundError:
    data = {{}}
action = sys.argv[1]
if action == "get":
    server = sys.stdin.read().strip()
    if server not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps({{"ServerURL": server, "Username": data[server][0], "Secret": data[server][1]}}))
elif action == "store":
    entry = json.load(sys.stdin)
    data[entry["ServerURL"]] = [entry["Username"], entry["Secret"]]
    json.dump(data, open(path, "w"))
elif action == "erase":
    data.pop(sys.stdin.read().strip(), None)
    json.dump(data, open(path, "w"))
"""
    )
    script.chmod(0o755)


def test_credential_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_helper(bin_dir, "fakestore", tmp_path / "secrets.json")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credHelpers": {"reg.example.com": "fakestore"}}))
    assert lookup_credentials("reg.example.com", config_path=config) is None
    store_credentials("reg.example.com", Credentials("helped", "secret"), config_path=config)
    assert "auths" not in json.loads(config.read_text())  # the helper holds the secret, not the file
    assert json.loads((tmp_path / "secrets.json").read_text()) == {"reg.example.com": ["helped", "secret"]}
    assert lookup_credentials("reg.example.com", config_path=config) == Credentials("helped", "secret")
    # Other registries still use the file.
    assert lookup_credentials("other.example.com", config_path=config) is None
    assert erase_credentials("reg.example.com", config_path=config)
    assert lookup_credentials("reg.example.com", config_path=config) is None
    # credsStore covers every registry; "<token>" as user name means an identity token.
    (tmp_path / "secrets.json").write_text(json.dumps({DOCKER_HUB_CONFIG_KEY: ["<token>", "refresh-me"]}))
    config.write_text(json.dumps({"credsStore": "fakestore"}))
    assert lookup_credentials("docker.io", config_path=config) == Credentials("", "", "refresh-me")
