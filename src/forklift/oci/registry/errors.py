"""What can go wrong when talking to a registry, as errors a person can act on.

Every class is a ``forklift.errors.RegistryError`` (so the CLI renders it without a traceback); a
registry that serves content not matching its digest is also a ``DigestMismatch``.
"""

from __future__ import annotations

import json

import httpx

from forklift.errors import DigestMismatch, RegistryError


class RegistryAuthError(RegistryError):
    """The registry (or its token server) refused our credentials, or we have none and it wants some."""


class RegistryNotFound(RegistryError):
    """The repository, tag, manifest or blob does not exist on the registry."""


class RegistryUnavailable(RegistryError):
    """The registry could not be reached, or kept failing (connection faults, 5xx) after retries."""


class RegistryProtocolError(RegistryError):
    """The registry answered something the distribution protocol does not allow."""


class RegistryContentMismatch(RegistryError, DigestMismatch):
    """The registry served content that does not match the digest (or size) it was asked for."""


def describe_response(response: httpx.Response) -> str:
    """The registry's own explanation of a failed response: its ``errors`` list, else the status."""
    detail = ""
    try:
        body = json.loads(response.content or b"{}")
    except (ValueError, httpx.ResponseNotRead):
        body = {}
    if isinstance(body, dict):
        entries = body.get("errors")
        if isinstance(entries, list):
            parts = []
            for entry in entries:
                if isinstance(entry, dict):
                    code, message = entry.get("code", ""), entry.get("message", "")
                    parts.append(f"{code}: {message}" if code and message else str(code or message))
            detail = "; ".join(p for p in parts if p)
    status = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    return f"{status} ({detail})" if detail else status


def error_for_response(response: httpx.Response, what: str) -> RegistryError:
    """The error to raise for a failed response to a request about ``what`` (e.g. 'manifest x:y')."""
    text = f"{what}: {describe_response(response)}"
    host = response.request.url.netloc.decode()
    if response.status_code == 401:
        return RegistryAuthError(
            f"{text}: authentication required",
            hint=f"log in with 'forklift login {host}' (or docker login), or check the name",
        )
    if response.status_code == 403:
        return RegistryAuthError(f"{text}: access denied", hint="check that your account may use this name")
    if response.status_code == 404:
        return RegistryNotFound(f"{text}: not found on {host}", hint="check the name, tag or digest")
    if response.status_code >= 500:
        return RegistryUnavailable(f"{text}: the registry failed")
    return RegistryProtocolError(f"{text}: unexpected answer from {host}")
