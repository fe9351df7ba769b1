"""The registry fixtures (a real Debian docker-registry on 127.0.0.1, fault proxies) for every e2e test."""

from registry_fixtures import (
    _basic_registry,
    _drop_proxy,
    _flip_proxy,
    _plain_registry,
    _token_registry,
    _unavailable_proxy,
)

__all__ = [
    "_basic_registry",
    "_drop_proxy",
    "_flip_proxy",
    "_plain_registry",
    "_token_registry",
    "_unavailable_proxy",
]
