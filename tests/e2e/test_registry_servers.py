"""The test registries themselves: they start, and the authenticated ones really demand credentials."""

from __future__ import annotations

import httpx
import pytest
from registry_fixtures import (
    PASSWORD,
    USER,
    RegistryServer,
    TokenRegistry,
)

pytestmark = pytest.mark.e2e


def test_plain_registry_answers(plain_registry: RegistryServer) -> None:
    assert httpx.get(f"{plain_registry.url}/v2/").status_code == 200


def test_basic_registry_demands_credentials(basic_registry: RegistryServer) -> None:
    anonymous = httpx.get(f"{basic_registry.url}/v2/")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic ")
    assert httpx.get(f"{basic_registry.url}/v2/", auth=(USER, PASSWORD)).status_code == 200
    assert httpx.get(f"{basic_registry.url}/v2/", auth=(USER, "wrong")).status_code == 401


def test_token_registry_accepts_tokens_from_the_token_server(token_registry: TokenRegistry) -> None:
    url = f"http://{token_registry.host}/v2/"
    challenge = httpx.get(url)
    assert challenge.status_code == 401
    assert challenge.headers["www-authenticate"].startswith("Bearer realm=")
    token = httpx.get(
        token_registry.tokens.realm, params={"service": "forklift-test-registry"}, auth=(USER, PASSWORD)
    ).json()["token"]
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert httpx.get(url, headers={"Authorization": "Bearer not-a-token"}).status_code == 401
