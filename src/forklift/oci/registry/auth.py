"""Registry authentication: credentials from docker's config, and the Basic and Bearer token flows.

Credentials live where docker keeps them, so ``docker login`` and ``forklift login`` share them:
``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json`` (``auths`` entries with base64
``user:password``, and credential helpers ``docker-credential-<name>`` named by ``credHelpers`` or
``credsStore``). Every function takes the config path as a parameter; nothing reads it implicitly.

The HTTP side is an ``httpx.Auth`` (``RegistryAuth``): it answers a 401 challenge (RFC 7235
``WWW-Authenticate``) with Basic credentials or, for ``Bearer realm=...,service=...,scope=...``, by
fetching a token from the realm (with Basic credentials when we have them), caching it per scope and
sending it pre-emptively on later requests to the same repository, so large streamed uploads are
not refused half-way.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import httpx

from forklift.fsatomic import atomic_write
from forklift.oci.registry.errors import RegistryAuthError, describe_response
from forklift.records import record

# Docker Hub's credentials are filed under this key, whatever name the user typed.
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
# Tokens are renewed this many seconds before they expire, so one does not lapse in flight.
_TOKEN_MARGIN = 10.0
# The spec's default lifetime for a token whose response names none.
_DEFAULT_TOKEN_LIFETIME = 60.0


@record
class Credentials:
    """A user name and password, or an identity (refresh) token from a credential helper or login."""

    username: str
    password: str = ""
    identity_token: str | None = None


def default_docker_config() -> Path:
    """Where docker keeps credentials: ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    directory = os.environ.get("DOCKER_CONFIG")
    return (Path(directory) if directory else Path.home() / ".docker") / "config.json"


def config_key(registry: str) -> str:
    """The key docker files a registry's credentials under (Docker Hub has its historical URL)."""
    host = _bare_host(registry)
    return DOCKER_HUB_CONFIG_KEY if host in _DOCKER_HUB_NAMES else host


def _bare_host(name: str) -> str:
    """``https://host:port/v2/`` or ``host:port`` -> ``host:port`` (docker accepts both in config)."""
    name = name.strip()
    name = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", name)
    return name.split("/", 1)[0].lower()


def _read_config(config_path: Path) -> dict[str, object]:
    try:
        data = json.loads(config_path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise RegistryAuthError(f"cannot read credentials from {config_path}: {err}") from err
    if not isinstance(data, dict):
        raise RegistryAuthError(f"cannot read credentials from {config_path}: not a JSON object")
    return data


def _write_config(config_path: Path, data: dict[str, object]) -> None:
    """Atomically replace the config, readable by its owner only (it holds passwords)."""
    config_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(config_path, json.dumps(data, indent="\t") + "\n", durable=True, mode=0o600)


def _helper_for(config: dict[str, object], registry: str) -> str | None:
    """The credential helper program configured for ``registry``, if it is installed."""
    key = config_key(registry)
    helpers = config.get("credHelpers")
    name = None
    if isinstance(helpers, dict):
        for entry, helper in helpers.items():
            if isinstance(helper, str) and config_key(entry) == key:
                name = helper
    if name is None:
        store = config.get("credsStore")
        name = store if isinstance(store, str) and store else None
    if name is None:
        return None
    return shutil.which(f"docker-credential-{name}")


def _run_helper(program: str, action: str, payload: str) -> str:
    try:
        result = subprocess.run(
            [program, action], input=payload, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RegistryAuthError(f"credential helper {program} failed: {err}") from err
    if result.returncode != 0:
        message = (result.stdout + result.stderr).strip()
        if action == "get" and "credentials not found" in message.lower():
            return ""
        raise RegistryAuthError(f"credential helper {program} {action} failed: {message}")
    return result.stdout


def lookup_credentials(registry: str, *, config_path: Path) -> Credentials | None:
    """The stored credentials for ``registry`` (a host, ``host:port`` or docker's URL form), or None.

    A credential helper named for the registry (``credHelpers``) or for all (``credsStore``) wins
    when installed; otherwise the ``auths`` entry (base64 ``auth``, or ``username``/``password``,
    and ``identitytoken``).
    """
    config = _read_config(config_path)
    helper = _helper_for(config, registry)
    if helper is not None:
        out = _run_helper(helper, "get", config_key(registry))
        if out.strip():
            try:
                answer = json.loads(out)
                username, secret = str(answer["Username"]), str(answer["Secret"])
            except (ValueError, KeyError, TypeError) as err:
                raise RegistryAuthError(f"credential helper {helper} gave an unreadable answer") from err
            # docker's convention: the user name "<token>" means the secret is an identity token.
            if username == "<token>":
                return Credentials(username="", identity_token=secret)
            return Credentials(username=username, password=secret)
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return None
    key = config_key(registry)
    for entry_name, entry in auths.items():
        if config_key(entry_name) != key or not isinstance(entry, dict):
            continue
        username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
        encoded = entry.get("auth")
        if isinstance(encoded, str) and encoded:
            try:
                username, _, password = base64.b64decode(encoded).decode().partition(":")
            except ValueError as err:
                raise RegistryAuthError(f"the credentials for {key} in {config_path} are corrupt") from err
        token = entry.get("identitytoken")
        identity = token if isinstance(token, str) and token else None
        if username or identity:
            return Credentials(username=username, password=password, identity_token=identity)
    return None


def store_credentials(registry: str, credentials: Credentials, *, config_path: Path) -> None:
    """Save credentials as ``docker login`` does: in the configured helper, else in ``auths``."""
    config = _read_config(config_path)
    key = config_key(registry)
    helper = _helper_for(config, registry)
    if helper is not None:
        payload = {"ServerURL": key, "Username": credentials.username, "Secret": credentials.password}
        _run_helper(helper, "store", json.dumps(payload))
        return
    auths = config.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    userpass = f"{credentials.username}:{credentials.password}".encode()
    entry: dict[str, str] = {"auth": base64.b64encode(userpass).decode()}
    if credentials.identity_token:
        entry["identitytoken"] = credentials.identity_token
    auths[key] = entry
    config["auths"] = auths
    _write_config(config_path, config)


def erase_credentials(registry: str, *, config_path: Path) -> bool:
    """Forget the credentials for ``registry``; True when there were some."""
    config = _read_config(config_path)
    key = config_key(registry)
    helper = _helper_for(config, registry)
    removed = False
    if helper is not None:
        removed = bool(_run_helper(helper, "get", key).strip())
        if removed:
            _run_helper(helper, "erase", key)
    auths = config.get("auths")
    if isinstance(auths, dict):
        for name in [n for n in auths if config_key(n) == key]:
            del auths[name]
            removed = True
        _write_config(config_path, config)
    return removed


# ---------------------------------------------------------------------------------------------
# Challenges and the HTTP flow


@record
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: the scheme (lower case) and its parameters."""

    scheme: str
    params: dict[str, str]


_TOKEN_RE = re.compile(r"\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*")
_PARAM_RE = re.compile(r'\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*')


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Parse ``Bearer realm="https://a",service="b",scope="c d", Basic realm="x"`` into challenges.

    Quoted values may hold commas, spaces and backslash escapes; unknown schemes are kept.
    """
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        scheme_match = _TOKEN_RE.match(header, pos)
        if scheme_match is None:
            pos += 1
            continue
        scheme = scheme_match.group(1).lower()
        pos = scheme_match.end()
        params: dict[str, str] = {}
        while pos < len(header):
            param = _PARAM_RE.match(header, pos)
            if param is None:
                break
            # A token followed by '=' that is really the next scheme cannot happen: schemes have no '='.
            name, value = param.group(1).lower(), param.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[name] = value
            pos = param.end()
            if pos < len(header) and header[pos] == ",":
                pos += 1
        challenges.append(Challenge(scheme=scheme, params=params))
        while pos < len(header) and header[pos] in ", ":
            pos += 1
    return challenges


_REPOSITORY_PATH = re.compile(r"^/v2/(.+?)/(?:blobs|manifests|tags)/")


def repository_of(url: httpx.URL) -> str | None:
    """The repository a distribution API URL is about (``/v2/<name>/blobs/...`` -> name)."""
    match = _REPOSITORY_PATH.match(url.path)
    return match.group(1) if match else None


@dataclass
class _Token:
    value: str
    expires_at: float


class RegistryAuth(httpx.Auth):
    """Authentication for one registry host, for use as ``httpx.Client(auth=...)``.

    Thread-safe: concurrent layer downloads share one instance. Tokens are cached per (realm,
    service, scopes) and remembered per repository so later requests carry them before being asked.
    """

    def __init__(self, credentials: Credentials | None = None) -> None:
        self.credentials = credentials
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str, tuple[str, ...]], _Token] = {}
        self._repo_tokens: dict[str, _Token] = {}
        self._basic_hosts: set[str] = set()
        self.tokens_fetched = 0  # how many times a token endpoint was asked (for tests and reports)

    def _basic_header(self) -> str | None:
        creds = self.credentials
        if creds is None or not creds.username:
            return None
        pair = f"{creds.username}:{creds.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def _preemptive(self, request: httpx.Request) -> None:
        """Attach what we already know will be asked for: a live repository token, or Basic."""
        repository = repository_of(request.url)
        now = time.monotonic()
        with self._lock:
            token = self._repo_tokens.get(repository) if repository else None
            basic = request.url.netloc.decode() in self._basic_hosts
        if token is not None and token.expires_at > now:
            request.headers["Authorization"] = f"Bearer {token.value}"
        elif basic and (header := self._basic_header()):
            request.headers["Authorization"] = header

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._preemptive(request)
        response = yield request
        if response.status_code != 401:
            return
        challenges = parse_www_authenticate(response.headers.get("WWW-Authenticate", ""))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if bearer is not None and "realm" in bearer.params:
            token = yield from self._fetch_token(bearer, request)
            header = f"Bearer {token.value}"
            repository = repository_of(request.url)
            if repository:
                with self._lock:
                    self._repo_tokens[repository] = token
        elif basic is not None and (basic_header := self._basic_header()):
            with self._lock:
                self._basic_hosts.add(request.url.netloc.decode())
            header = basic_header
        else:
            return
        if request.headers.get("Authorization") == header:
            return  # the same answer was already refused: insufficient rights, not a missing token
        # A streamed body cannot be sent twice; the caller retries it (the token is now cached).
        if not isinstance(request.stream, httpx.ByteStream):
            return
        request.headers["Authorization"] = header
        yield request

    def _fetch_token(
        self, challenge: Challenge, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, _Token]:
        realm = challenge.params["realm"]
        service = challenge.params.get("service", "")
        scopes = tuple(sorted(s for s in challenge.params.get("scope", "").split(" ") if s))
        key = (realm, service, scopes)
        now = time.monotonic()
        with self._lock:
            cached = self._tokens.get(key)
        if cached is not None and cached.expires_at > now:
            return cached
        creds = self.credentials
        if creds is not None and creds.identity_token:
            # OAuth2 refresh-token grant, as docker does for identity tokens.
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token}
            form |= {"service": service, "client_id": "forklift", "scope": " ".join(scopes)}
            token_request = httpx.Request("POST", realm, data=form)
        else:
            params: list[tuple[str, str | int | float | bool | None]] = []
            params += [("service", service)] if service else []
            params += [("scope", s) for s in scopes]
            token_request = httpx.Request("GET", realm, params=params)
            if header := self._basic_header():
                token_request.headers["Authorization"] = header
        response = yield token_request
        response.read()
        self.tokens_fetched += 1
        if response.status_code != 200:
            registry = request.url.netloc.decode()
            raise RegistryAuthError(
                f"the token server for {registry} refused us: {describe_response(response)}",
                hint=f"log in with 'forklift login {registry}'" if creds is None else "check the credentials",
            )
        try:
            body = response.json()
            value = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError) as err:
            raise RegistryAuthError(f"the token server {realm} gave an unreadable answer") from err
        if not isinstance(value, str) or not value:
            raise RegistryAuthError(f"the token server {realm} gave no token")
        token = _Token(value=value, expires_at=now + max(lifetime - _TOKEN_MARGIN, 1.0))
        with self._lock:
            self._tokens[key] = token
        return token
