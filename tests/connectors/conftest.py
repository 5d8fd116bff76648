"""Fixtures for the connector tests: local fake servers over real HTTP(S), no other network.

Each vendor's real client talks to a pytest-httpserver on 127.0.0.1; Salesforce's over TLS
with a throwaway CA from trustme, since simple-salesforce only speaks HTTPS. Any connection
to a host other than loopback fails the test. These tests import no Django.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from pytest_httpserver import HTTPServer

PAYLOADS = Path(__file__).parent / "payloads"

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse DNS look-ups and connections to anything but loopback.

    Patching ``socket.socket.connect`` covers urllib3 (HubSpot's client), which does not go
    through ``socket.create_connection``; ``getaddrinfo`` stops name look-ups leaking out.
    """
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback(host):
            raise OSError(f"network access to {host!r} is blocked in connector tests")
        return real_getaddrinfo(host, *args, **kwargs)

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise OSError(f"network access to {address[0]!r} is blocked in connector tests")

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        return real_connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    # requests would send loopback traffic to an environment proxy; keep it direct.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


def load_json(relative: str) -> Any:
    return json.loads((PAYLOADS / relative).read_text(encoding="utf-8"))


def load_bytes(relative: str) -> bytes:
    return (PAYLOADS / relative).read_bytes()


def _serve(server: HTTPServer) -> Iterator[HTTPServer]:
    # An unexpected request must fail fast as a permanent error, not look like a 500 that
    # the connector would retry.
    server.no_handler_status_code = 418
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture(scope="session")
def _plain_server() -> Iterator[HTTPServer]:
    yield from _serve(HTTPServer(host="127.0.0.1", port=0, threaded=True))


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_bundle(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of the throwaway CA certificate: the ``verify`` the Salesforce client trusts."""
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="session")
def _tls_server(tls_ca: trustme.CA) -> Iterator[HTTPServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    yield from _serve(HTTPServer(host="127.0.0.1", port=0, ssl_context=context, threaded=True))


def _per_test(server: HTTPServer) -> Iterator[HTTPServer]:
    server.clear()
    yield server
    # Surface assertion failures raised inside handlers (they otherwise only become 500s).
    server.check_assertions()
    server.check_handler_errors()
    server.clear()


@pytest.fixture
def http_server(_plain_server: HTTPServer) -> Iterator[HTTPServer]:
    """A plain-HTTP fake vendor server on 127.0.0.1, emptied for each test."""
    yield from _per_test(_plain_server)


@pytest.fixture
def https_server(_tls_server: HTTPServer) -> Iterator[HTTPServer]:
    """A TLS fake vendor server on 127.0.0.1 whose certificate ``ca_bundle`` trusts."""
    yield from _per_test(_tls_server)


class SleepRecorder:
    """Stands in for ``time.sleep``: records the delays instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def json_payload() -> Callable[[str], Any]:
    return load_json
