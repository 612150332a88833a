"""Kept-alive plain-HTTP connections through the proxy: every request is decided on its own.

A client may send a second request on the connection of an allowed first one; it must be
decided by its own target and Host, not ride on the first one's verdict. Clients: a raw socket
(two requests, sent one after the other or pipelined in one write) and curl fetching two URLs
over one proxy connection.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from enforcer.models import EventAction
from tests.shim.test_proxy import (  # noqa: F401 - fixtures used by name
    CURL,
    Proxy,
    ca,
    needs_curl,
    origins,
    start,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def proxy(tmp_path: Path, origins: tuple[int, int]) -> Iterator[Proxy]:  # noqa: F811
    yield from start(tmp_path, origins)


def get(url: str, host: str | None = None) -> bytes:
    authority = host or url.split("/")[2]
    return f"GET {url} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()


def read_response(stream: BinaryIO) -> tuple[bytes, bytes]:
    """The next response (with a Content-Length body) on a connection: (head, body)."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = stream.readline()
        assert line, f"closed before a response head: {head!r}"
        head += line
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    body = stream.read(length)
    assert len(body) == length, "closed inside a response body"
    return head, body


def closed(stream: BinaryIO) -> bool:
    return stream.read(1) == b""


@pytest.mark.parametrize("pipelined", [False, True])
def test_a_blocked_second_request_on_a_kept_alive_connection_is_blocked(
    proxy: Proxy, pipelined: bool
) -> None:
    first = get("http://allowed.test/one")
    second = get("http://blocked.example/two")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        stream = sock.makefile("rb")
        sock.sendall(first + second if pipelined else first)
        head, body = read_response(stream)
        assert head.startswith(b"HTTP/1.1 200 ") and body == b"hello from allowed.test/one"
        assert b"connection: close" not in head.lower()
        if not pipelined:
            sock.sendall(second)
        head, body = read_response(stream)
        assert head.startswith(b"HTTP/1.1 403 ") and b"Bad App" in body
        assert closed(stream)
    events = proxy.wait_events(2)
    assert [(e.domain, e.action) for e in events] == [
        ("allowed.test", EventAction.ALLOWED),
        ("blocked.example", EventAction.BLOCKED),
    ]
    assert events[0].bytes_down > len(b"hello from allowed.test/one")


def test_a_blocked_host_header_on_a_later_request_is_blocked(proxy: Proxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        stream = sock.makefile("rb")
        sock.sendall(get("http://allowed.test/one"))
        assert read_response(stream)[0].startswith(b"HTTP/1.1 200 ")
        sock.sendall(get("http://allowed.test/two", host="blocked.example"))
        assert read_response(stream)[0].startswith(b"HTTP/1.1 403 ")
        assert closed(stream)


def test_allowed_requests_keep_relaying_each_with_its_event(proxy: Proxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        stream = sock.makefile("rb")
        for n in range(3):
            host = "allowed.test" if n % 2 == 0 else "audit.example"
            sock.sendall(get(f"http://{host}/{n}"))
            head, body = read_response(stream)
            assert head.startswith(b"HTTP/1.1 200 ") and body == f"hello from {host}/{n}".encode()
        post = b"POST http://allowed.test/p HTTP/1.1\r\nHost: allowed.test\r\n"
        sock.sendall(post + b"Content-Length: 5\r\n\r\nhello" + get("http://allowed.test/4"))
        assert read_response(stream)[1] == b"received hello"
        assert read_response(stream)[1] == b"hello from allowed.test/4"
    events = proxy.wait_events(5)
    assert [e.action for e in events] == [
        EventAction.ALLOWED,
        EventAction.AUDITED,
        EventAction.ALLOWED,
        EventAction.ALLOWED,
        EventAction.ALLOWED,
    ]


def test_a_client_asking_to_close_is_closed(proxy: Proxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        stream = sock.makefile("rb")
        request = b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n"
        sock.sendall(request + b"Connection: close\r\n\r\n")
        head, _ = read_response(stream)
        assert b"connection: close" in head.lower()
        assert closed(stream)


@needs_curl
def test_curl_with_two_urls_on_one_connection(proxy: Proxy) -> None:
    assert CURL is not None
    argv = [CURL, "-sS", "--max-time", "10", "-x", proxy.url]
    argv += ["-w", "\n%{http_code} %{num_connects}\n"]
    argv += ["http://allowed.test/a", "http://blocked.example/b"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    assert "hello from allowed.test/a\n200 1\n" in result.stdout
    assert result.stdout.endswith("\n403 0\n"), result.stdout  # the same connection, reused
    events = proxy.wait_events(2)
    assert [(e.domain, e.action) for e in events] == [
        ("allowed.test", EventAction.ALLOWED),
        ("blocked.example", EventAction.BLOCKED),
    ]
