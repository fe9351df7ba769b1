"""Real registries for the registry tests: Debian's docker-registry, a Bearer token server, fault proxies.

Everything listens on 127.0.0.1 on a free port and stops at the end of the session. The instances:

- ``plain_registry``: no authentication.
- ``basic_registry``: htpasswd Basic auth (bcrypt file made with ``htpasswd -Bbn``).
- ``token_registry``: the registry's ``auth: token`` with a token server written here; the server signs
  RS256 JWTs with a key and self-signed certificate made with ``openssl`` at test time, and the
  registry trusts that certificate (``rootcertbundle``).
- ``drop_proxy`` / ``flip_proxy`` / ``unavailable_proxy``: tiny HTTP proxies in front of the plain
  registry that drop the connection half-way through a blob (the first time each blob is fetched),
  flip one byte in every blob, or answer each blob's first request with 503.

Tests import the fixtures they use from this module (they are registered under their public names).
"""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from support import require_tool

USER = "forklift"
PASSWORD = "s3cret-pass"
TOKEN_SERVICE = "forklift-test-registry"
TOKEN_ISSUER = "forklift-test-issuer"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RegistryServer:
    """A running docker-registry: its address and how to stop it."""

    host: str  # "127.0.0.1:PORT", what a reference names
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_registry(workdir: Path, auth_yaml: str = "") -> RegistryServer:
    """Start docker-registry on a free port with its storage under ``workdir``; wait until /v2/ answers."""
    binary = require_tool("docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "config.yml"
    # The registry reads YAML; JSON is YAML, so the body is built as data, and auth is appended as text.
    body = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "storage")},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {"addr": f"127.0.0.1:{port}", "headers": {"X-Content-Type-Options": ["nosniff"]}},
        "health": {"storagedriver": {"enabled": False}},
    }
    text = json.dumps(body, indent=2)
    if auth_yaml:
        text = text.rstrip()[:-1].rstrip() + ",\n" + auth_yaml + "\n}\n"
    config.write_text(text)
    log = workdir / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = RegistryServer(host=f"127.0.0.1:{port}", process=process, log=log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            # 200 without auth, 401 with: either way the registry answers.
            if httpx.get(f"{server.url}/v2/", timeout=1).status_code in (200, 401):
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"docker-registry did not start:\n{log.read_text()}")


# ---------------------------------------------------------------------------------------------
# The Bearer token server


@dataclass
class TokenServer:
    """A token endpoint (docker's token auth spec) that signs RS256 JWTs the registry trusts.

    Anonymous requests get ``pull`` only; requests with the right Basic credentials get every action
    they ask for; wrong credentials get 401. ``issued`` records each (scope, user) handed out.
    """

    key: Path
    cert: Path
    port: int = 0
    issued: list[tuple[str, str]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def sign(self, claims: dict[str, object]) -> str:
        """A compact JWS (RS256) with the certificate in ``x5c``, as the registry verifies it."""
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True, capture_output=True
        ).stdout
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing_input}.{b64url(signature)}"

    def grant(self, scopes: list[str], user: str) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            allowed = wanted if user else [a for a in wanted if a == "pull"]
            access.append({"type": kind, "name": name, "actions": allowed})
            self.issued.append((scope, user))
        now = int(time.time())
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": user,
            "aud": TOKEN_SERVICE,
            "exp": now + 600,
            "nbf": now - 30,
            "iat": now,
            "jti": f"{now}-{len(self.issued)}",
            "access": access,
        }
        return self.sign(claims)

    def granted(self, user: str) -> set[tuple[str, frozenset[str]]]:
        """(``repository:NAME``, actions) pairs asked for by ``user``, actions as a set."""
        out = set()
        for scope, who in self.issued:
            resource, _, actions = scope.rpartition(":")
            if who == user:
                out.add((resource, frozenset(actions.split(","))))
        return out

    def start(self) -> None:
        token_server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                if url.path != "/token" or query.get("service") != [TOKEN_SERVICE]:
                    self.send_error(404)
                    return
                user = ""
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    given = base64.b64decode(header[6:]).decode()
                    if given != f"{USER}:{PASSWORD}":
                        self.send_error(401)
                        return
                    user = USER
                token = token_server.grant(query.get("scope", []), user)
                body = json.dumps({"token": token, "access_token": token, "expires_in": 600}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_signing_cert(workdir: Path) -> tuple[Path, Path]:
    """An RSA key and a self-signed certificate for the token server (openssl, at test time)."""
    key, cert = workdir / "token.key", workdir / "token.crt"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=forklift-test-token-issuer"),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


# ---------------------------------------------------------------------------------------------
# Fault proxies


BlobFault = Callable[[str, bytes, int], bytes | None]


@dataclass
class FaultProxy:
    """An HTTP proxy in front of a registry that tampers with blob downloads.

    ``fault(path, body, attempt)`` sees each successful blob GET (``attempt`` counts GETs of that path,
    from 1) and returns the body to send, or None to send half of it and drop the connection.
    ``blob_gets`` records (path, Range header) for every blob GET.
    """

    upstream: str  # "127.0.0.1:PORT"
    fault: BlobFault
    first_status: int | None = None  # answer each blob's first GET with this status instead
    port: int = 0
    blob_gets: list[tuple[str, str]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=30)
                # The Host header is passed unchanged, so the registry's Location headers name the proxy.
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                upstream.close()
                is_blob = self.command == "GET" and "/blobs/sha256:" in self.path
                if is_blob and proxy.first_status and not any(p == self.path for p, _ in proxy.blob_gets):
                    proxy.blob_gets.append((self.path, f"answered {proxy.first_status}"))
                    error = b'{"errors":[{"code":"UNAVAILABLE","message":"try again"}]}'
                    self.send_response(proxy.first_status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                if is_blob and response.status in (200, 206):
                    proxy.blob_gets.append((self.path, self.headers.get("Range", "")))
                    attempt = sum(1 for p, _ in proxy.blob_gets if p == self.path)
                    tampered = proxy.fault(self.path, payload, attempt)
                    if tampered is None:
                        self.send_response(response.status)
                        for k, v in response.getheaders():
                            if k.lower() not in ("connection", "transfer-encoding"):
                                self.send_header(k, v)
                        self.send_header("Connection", "close")
                        self.end_headers()
                        self.wfile.write(payload[: len(payload) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    payload = tampered
                self.send_response(response.status)
                for k, v in response.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def drop_first_attempt(path: str, body: bytes, attempt: int) -> bytes | None:
    """Drop the connection half-way through the first download of each blob (only if it is not tiny)."""
    return None if attempt == 1 and len(body) > 64 else body


def flip_middle_byte(path: str, body: bytes, attempt: int) -> bytes | None:
    """Flip one bit of the middle byte of every blob: same length, wrong content."""
    if not body:
        return body
    middle = len(body) // 2
    return body[:middle] + bytes([body[middle] ^ 0x01]) + body[middle + 1 :]


# ---------------------------------------------------------------------------------------------
# Fixtures (session-scoped: one registry of each kind per test session)


@pytest.fixture(scope="session", name="plain_registry")
def _plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = start_registry(tmp_path_factory.mktemp("registry-plain"))
    yield server
    server.stop()


@pytest.fixture(scope="session", name="basic_registry")
def _basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    htpasswd = require_tool("htpasswd")
    workdir = tmp_path_factory.mktemp("registry-basic")
    line = subprocess.run(
        [htpasswd, "-Bbn", USER, PASSWORD], check=True, capture_output=True, text=True
    ).stdout.strip()
    (workdir / "htpasswd").write_text(line + "\n")
    auth = json.dumps({"htpasswd": {"realm": "forklift-test", "path": str(workdir / "htpasswd")}})
    server = start_registry(workdir, f'"auth": {auth}')
    yield server
    server.stop()


@dataclass
class TokenRegistry:
    registry: RegistryServer
    tokens: TokenServer

    @property
    def host(self) -> str:
        return self.registry.host


@pytest.fixture(scope="session", name="token_registry")
def _token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is required for the token server")
    workdir = tmp_path_factory.mktemp("registry-token")
    key, cert = make_signing_cert(workdir)
    tokens = TokenServer(key=key, cert=cert)
    tokens.start()
    auth = json.dumps(
        {
            "token": {
                "realm": tokens.realm,
                "service": TOKEN_SERVICE,
                "issuer": TOKEN_ISSUER,
                "rootcertbundle": str(cert),
            }
        }
    )
    server = start_registry(workdir, f'"auth": {auth}')
    yield TokenRegistry(registry=server, tokens=tokens)
    server.stop()
    tokens.stop()


@pytest.fixture(name="drop_proxy")
def _drop_proxy(plain_registry: RegistryServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream=plain_registry.host, fault=drop_first_attempt)
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture(name="unavailable_proxy")
def _unavailable_proxy(plain_registry: RegistryServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream=plain_registry.host, fault=lambda path, body, attempt: body, first_status=503)
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture(name="flip_proxy")
def _flip_proxy(plain_registry: RegistryServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream=plain_registry.host, fault=flip_middle_byte)
    proxy.start()
    yield proxy
    proxy.stop()
