"""The HTTP / CONNECT proxy front end, driven by real clients (curl, httpx, ssl sockets).

Every server here listens on a free port of 127.0.0.1. Test names (``*.test``, ``*.example``)
do not resolve, so the proxy gets a `connect` override that routes any known name to the local
origin servers: port 80 to a plain HTTP origin, port 443 to a TLS origin whose certificate comes
from a trustme CA, any other port to 127.0.0.1 on that port (raw servers of a test).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import http.server
import json
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from enforcer.decide.matcher import MatchEntry, Matcher
from enforcer.models import Action, EventAction, NetworkEvent
from enforcer.shim.proxy import notify as notify_module
from enforcer.shim.proxy import pages
from enforcer.shim.proxy.bypass import BypassStore
from enforcer.shim.proxy.frontend import ProxyFrontEnd, ProxyLimits, start_proxy
from enforcer.shim.proxy.http1 import BadRequest, parse_absolute, parse_authority, parse_head
from enforcer.shim.proxy.notify import command
from tests.shim.test_tls import client_hello

pytestmark = pytest.mark.timeout(60)

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")

KNOWN_NAMES = {
    "allowed.test",
    "www.allowed.test",
    "blocked.example",
    "www.blocked.example",
    "warn.example",
    "audit.example",
    "raw.test",
}
ENTRIES = [
    MatchEntry("blocked.example", Action.BLOCK, "badapp"),
    MatchEntry("warn.example", Action.WARN, "warnapp"),
    MatchEntry("audit.example", Action.AUDIT, "auditapp"),
]


class OriginHandler(http.server.BaseHTTPRequestHandler):
    """Answers GET with a page naming the host and path, POST with the body it received."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._send(f"hello from {self.headers['Host']}{self.path}".encode())

    def do_HEAD(self) -> None:
        # Content-Length announces a body that a HEAD response does not carry.
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._send(b"received " + body)

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve_in_thread(server: http.server.ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def origins(ca: trustme.CA) -> Iterator[tuple[int, int]]:
    """(plain HTTP port, TLS port) of the origin servers."""
    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OriginHandler)
    secure = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OriginHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*sorted(KNOWN_NAMES)).configure_cert(context)
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    threads = [serve_in_thread(plain), serve_in_thread(secure)]
    yield plain.server_address[1], secure.server_address[1]
    for server in (plain, secure):
        server.shutdown()
        server.server_close()
    for thread in threads:
        thread.join(5)


@dataclass
class Proxy:
    """A proxy front end running on its own event loop in a thread, and what it reported."""

    frontend: ProxyFrontEnd
    loop: asyncio.AbstractEventLoop
    port: int
    events: list[NetworkEvent] = field(default_factory=list)
    notifications: list[tuple[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, fn: Any) -> Any:
        """Run a plain function on the proxy's loop (where its state lives)."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(5)

    def wait_events(self, count: int) -> list[NetworkEvent]:
        """Events are emitted when a connection ends, a moment after the client saw its end."""
        deadline = time.monotonic() + 5
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.events)

    def wait_notifications(self, count: int) -> list[tuple[str, str]]:
        """A denial notifies after the connection is closed, so the client may finish first."""
        deadline = time.monotonic() + 5
        while len(self.notifications) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.notifications)


def start(tmp_path: Path, origins: tuple[int, int], **limits: Any) -> Iterator[Proxy]:
    plain_port, tls_port = origins
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def connect(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if host not in KNOWN_NAMES:
            raise OSError(f"{host} does not resolve")
        target = {80: plain_port, 443: tls_port}.get(port, port)
        return await asyncio.open_connection("127.0.0.1", target)

    events: list[NetworkEvent] = []
    notifications: list[tuple[str, str]] = []
    frontend = ProxyFrontEnd(
        Matcher(ENTRIES),
        bypasses=BypassStore(tmp_path / "state" / "bypasses.json"),
        on_event=events.append,
        notifier=lambda title, body: notifications.append((title, body)),
        user="alice",
        limits=ProxyLimits(**limits),
        connect=connect,
        app_names={"badapp": "Bad App"},
    )
    server = asyncio.run_coroutine_threadsafe(start_proxy(frontend), loop).result(5)
    proxy = Proxy(frontend, loop, frontend.pages_port, events, notifications)
    yield proxy

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.fixture
def proxy(tmp_path: Path, origins: tuple[int, int]) -> Iterator[Proxy]:
    yield from start(tmp_path, origins)


@pytest.fixture
def impatient_proxy(tmp_path: Path, origins: tuple[int, int]) -> Iterator[Proxy]:
    yield from start(tmp_path, origins, head_timeout=0.5)


def curl(proxy: Proxy, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    assert CURL is not None
    return subprocess.run(
        [CURL, "-sS", "--max-time", "10", "-x", proxy.url, *args, url],
        capture_output=True,
        text=True,
        timeout=20,
    )


def client(proxy: Proxy, **kwargs: Any) -> httpx.Client:
    return httpx.Client(proxy=proxy.url, timeout=10, **kwargs)


def raw_exchange(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Send bytes to the proxy, half-close, and read everything until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return _read_all(sock)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def form_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))


def continue_form(proxy: Proxy, page: str) -> httpx.Response:
    """Click "Continue" on a warning page: on the loopback page a direct request (browsers do
    not proxy loopback addresses), on a plain-HTTP site's page a request through the proxy."""
    action = re.search(r'<form method="post" action="([^"]+)"', page)
    assert action is not None
    url = action.group(1)
    if url.startswith(proxy.url):
        assert url == f"{proxy.url}/continue"
        return httpx.post(url, data=form_fields(page), timeout=10)
    assert url.endswith("/.well-known/enforcer/continue")
    with client(proxy) as http:
        return http.post(url, data=form_fields(page))


# ---------------------------------------------------------------------------------------------
# Plain HTTP


@needs_curl
def test_allowed_http_is_relayed_with_its_body(proxy: Proxy) -> None:
    result = curl(proxy, "http://allowed.test/some/path?q=1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello from allowed.test/some/path?q=1"
    posted = curl(proxy, "http://allowed.test/upload", "--data-binary", "x" * 100_000)
    assert posted.stdout == "received " + "x" * 100_000
    events = proxy.wait_events(2)
    assert [e.action for e in events] == [EventAction.ALLOWED, EventAction.ALLOWED]
    assert events[0].domain == "allowed.test"
    assert events[0].dest_ip == "127.0.0.1"
    assert events[0].dest_port == 80
    assert events[0].user == "alice"
    assert events[0].source == "proxy"
    assert events[1].bytes_up > 100_000
    assert events[1].bytes_down > len(posted.stdout)


@needs_curl
def test_a_large_upload_with_expect_100_continue(proxy: Proxy, tmp_path: Path) -> None:
    # Above 1 MiB curl sends "Expect: 100-continue" and waits for the interim response.
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"z" * 3_000_000)
    result = curl(proxy, "http://allowed.test/big", "--data-binary", f"@{upload}", "-v")
    assert result.returncode == 0, result.stderr
    assert "Expect: 100-continue" in result.stderr
    assert "HTTP/1.1 100 Continue" in result.stderr
    assert "Done waiting for 100-continue" not in result.stderr  # no 1 s stall
    assert result.stdout == "received " + "z" * 3_000_000
    (event,) = proxy.wait_events(1)
    assert event.bytes_up > 3_000_000


def test_httpx_through_the_proxy_with_content_length_and_chunked_bodies(proxy: Proxy) -> None:
    with client(proxy) as http:
        assert http.get("http://www.allowed.test/a").text == "hello from www.allowed.test/a"
        assert http.post("http://allowed.test/", content=b"abc").text == "received abc"
        chunked = http.post("http://allowed.test/", content=iter([b"one,", b"two,", b"three"]))
        assert chunked.text == "received one,two,three"
        head = http.head("http://allowed.test/")
        assert (head.status_code, head.content) == (200, b"")


@needs_curl
@pytest.mark.parametrize("name", ["blocked.example", "www.blocked.example", "WWW.Blocked.Example"])
def test_blocked_http_gets_a_block_page_naming_the_app(proxy: Proxy, name: str) -> None:
    result = curl(proxy, f"http://{name}/", "-w", "%{http_code}")
    assert result.stdout.endswith("403")
    assert "Bad App is blocked" in result.stdout
    assert "blocked.example" in result.stdout
    (event,) = proxy.wait_events(1)
    assert event.action is EventAction.BLOCKED
    assert event.domain == name.lower()
    assert (event.indicator, event.app_id) == ("blocked.example", "badapp")
    assert event.bytes_up == event.bytes_down == 0


def test_a_blocked_host_header_blocks_too(proxy: Proxy) -> None:
    response = raw_exchange(
        proxy.port, b"GET http://allowed.test/ HTTP/1.1\r\nHost: blocked.example\r\n\r\n"
    )
    assert response.startswith(b"HTTP/1.1 403 ")


@pytest.mark.parametrize("host", [".blocked.example", "BLOCKED.example."])
def test_a_host_spelt_with_empty_labels_is_decided_as_the_name_it_reaches(
    proxy: Proxy, host: str
) -> None:
    response = raw_exchange(
        proxy.port, f"GET http://allowed.test/ HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    )
    assert response.startswith(b"HTTP/1.1 403 ")
    assert b"Content-Security-Policy: frame-ancestors 'none'" in response
    (event,) = proxy.wait_events(1)
    assert event.action is EventAction.BLOCKED and event.app_id == "badapp"
    assert event.domain == host.strip(".").replace("..", ".").lower()


@pytest.mark.parametrize("host", ["www..blocked.example", "blocked.ex ample", "b\x01.example"])
def test_a_host_that_cannot_be_a_host_name_is_refused(proxy: Proxy, host: str) -> None:
    response = raw_exchange(
        proxy.port, f"GET http://allowed.test/ HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    )
    assert response.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 403 ")), response[:40]


def test_audit_is_relayed_and_recorded(proxy: Proxy) -> None:
    with client(proxy) as http:
        assert http.get("http://audit.example/x").text == "hello from audit.example/x"
    (event,) = proxy.wait_events(1)
    assert event.action is EventAction.AUDITED
    assert event.app_id == "auditapp"


def test_an_unreachable_origin_is_a_502(proxy: Proxy) -> None:
    with client(proxy) as http:
        assert http.get("http://nowhere.test/").status_code == 502


def test_real_name_resolution_without_a_connect_override(
    tmp_path: Path, origins: tuple[int, int]
) -> None:
    # The default connector resolves and connects for real: "localhost" is the one name that
    # resolves here without a network.
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    frontend = ProxyFrontEnd(
        Matcher(ENTRIES), bypasses=BypassStore(), notifier=lambda title, body: None
    )
    server = asyncio.run_coroutine_threadsafe(start_proxy(frontend), loop).result(5)
    try:
        url = f"http://127.0.0.1:{frontend.pages_port}"
        with httpx.Client(proxy=url, timeout=10) as http:
            response = http.get(f"http://localhost:{origins[0]}/real")
        assert response.text == f"hello from localhost:{origins[0]}/real"
    finally:

        async def stop() -> None:  # close on the loop's own thread: asyncio is not thread-safe
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_the_matcher_can_be_swapped(proxy: Proxy) -> None:
    with client(proxy) as http:
        assert http.get("http://allowed.test/").status_code == 200
        proxy.call(
            lambda: setattr(
                proxy.frontend,
                "matcher",
                Matcher([MatchEntry("allowed.test", Action.BLOCK, "nowblocked")]),
            )
        )
        assert http.get("http://allowed.test/").status_code == 403


# ---------------------------------------------------------------------------------------------
# CONNECT and TLS


@needs_curl
def test_connect_to_an_allowed_host_reaches_the_tls_origin(proxy: Proxy, ca_file: Path) -> None:
    result = curl(proxy, "https://allowed.test/secure", "--cacert", str(ca_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello from allowed.test/secure"
    (event,) = proxy.wait_events(1)
    assert event.action is EventAction.ALLOWED
    assert event.domain == "allowed.test"
    assert event.dest_port == 443
    assert event.bytes_up > 0
    assert event.bytes_down > 0


def test_httpx_https_through_the_proxy(proxy: Proxy, ca: trustme.CA) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with client(proxy, verify=context) as http:
        assert http.get("https://audit.example/s").text == "hello from audit.example/s"
    (event,) = proxy.wait_events(1)
    assert event.action is EventAction.AUDITED


@needs_curl
def test_connect_to_a_blocked_host_is_refused_and_notified(proxy: Proxy, ca_file: Path) -> None:
    result = curl(proxy, "https://www.blocked.example/", "--cacert", str(ca_file))
    assert result.returncode != 0
    assert "403" in result.stderr
    (event,) = proxy.wait_events(1)
    assert event.action is EventAction.BLOCKED
    assert event.domain == "www.blocked.example"
    assert proxy.wait_notifications(1) == [
        (
            "Bad App is blocked",
            "www.blocked.example is blocked by your organisation's policy (blocked.example).",
        )
    ]


def test_connect_403_names_the_app(proxy: Proxy) -> None:
    response = raw_exchange(proxy.port, b"CONNECT blocked.example:443 HTTP/1.1\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"Bad App (blocked.example) is denied by policy: block" in response


def connect_tunnel(port: int, target: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    answer = b""
    while not answer.endswith(b"\r\n\r\n"):
        answer += sock.recv(1)
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    return sock


def test_a_blocked_sni_behind_an_allowed_connect_is_denied(proxy: Proxy) -> None:
    with connect_tunnel(proxy.port, "allowed.test:443") as sock:
        sock.sendall(client_hello("www.blocked.example"))
        # A TLS access_denied alert, then the connection closes.
        assert _read_all(sock) == b"\x15\x03\x01\x00\x02\x02\x31"
    (event,) = proxy.wait_events(1)
    assert event.action is EventAction.BLOCKED
    assert event.domain == "www.blocked.example"
    assert event.app_id == "badapp"
    assert event.bytes_up == 0


@pytest.mark.parametrize("sni", ["www..blocked.example", ".blocked.example"])
def test_an_sni_with_empty_labels_behind_an_allowed_connect_is_denied(
    proxy: Proxy, sni: str
) -> None:
    # ssl will not write such a name: a hello for a name of the same length, patched.
    stand_in = sni.replace(".", "x", 1) if sni.startswith(".") else sni.replace("..", ".x")
    hello = client_hello(stand_in)
    assert hello.count(stand_in.encode()) == 1
    with connect_tunnel(proxy.port, "allowed.test:443") as sock:
        sock.sendall(hello.replace(stand_in.encode(), sni.encode()))
        assert _read_all(sock) == b"\x15\x03\x01\x00\x02\x02\x31"
    (event,) = proxy.wait_events(1)
    assert event.action is EventAction.BLOCKED and event.app_id == "badapp"


def test_a_real_tls_client_fronting_a_blocked_name_fails(proxy: Proxy, ca: trustme.CA) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with (
        connect_tunnel(proxy.port, "allowed.test:443") as sock,
        pytest.raises((ssl.SSLError, ConnectionError)),
    ):
        context.wrap_socket(sock, server_hostname="blocked.example")


def test_a_split_client_hello_is_read_whole(proxy: Proxy) -> None:
    hello = client_hello("blocked.example")
    with connect_tunnel(proxy.port, "allowed.test:443") as sock:
        for at in range(0, len(hello), 50):
            sock.sendall(hello[at : at + 50])
            time.sleep(0.002)
        assert _read_all(sock) == b"\x15\x03\x01\x00\x02\x02\x31"


def test_a_malformed_client_hello_is_denied(proxy: Proxy) -> None:
    with connect_tunnel(proxy.port, "allowed.test:443") as sock:
        sock.sendall(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00")
        assert _read_all(sock) == b"\x15\x03\x01\x00\x02\x02\x31"


def test_a_truncated_client_hello_is_denied(proxy: Proxy) -> None:
    with connect_tunnel(proxy.port, "allowed.test:443") as sock:
        sock.sendall(client_hello("allowed.test")[:100])
        sock.shutdown(socket.SHUT_WR)
        assert _read_all(sock) == b"\x15\x03\x01\x00\x02\x02\x31"
    (event,) = proxy.wait_events(1)
    assert (event.action, event.bytes_up) == (EventAction.BLOCKED, 0)


class RawOrigin:
    """A TCP server that reads `expect` bytes, answers `reply` and closes; records what it got."""

    def __init__(self, expect: int | None, reply: bytes) -> None:
        self.expect, self.reply = expect, reply
        self.received = b""
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(5)
            while self.expect is None or len(self.received) < self.expect:
                if self.expect is None and self.received.endswith(b"\r\n\r\n"):
                    break
                chunk = conn.recv(65536)
                if not chunk:
                    break
                self.received += chunk
            conn.sendall(self.reply)
        self.sock.close()


def test_tunnel_byte_counts_match_what_was_sent(proxy: Proxy) -> None:
    upload = b"u" * 300_000
    reply = b"d" * 123_457
    origin = RawOrigin(len(upload), reply)
    with connect_tunnel(proxy.port, f"raw.test:{origin.port}") as sock:
        sock.sendall(upload)
        received = _read_all(sock)
    assert received == reply
    (event,) = proxy.wait_events(1)
    assert (event.bytes_up, event.bytes_down) == (len(upload), len(reply))
    assert event.dest_port == origin.port
    assert event.domain == "raw.test"


def test_server_speaks_first_protocols_work_through_a_tunnel(proxy: Proxy) -> None:
    origin = RawOrigin(0, b"SSH-2.0-banner\r\n")
    with connect_tunnel(proxy.port, f"raw.test:{origin.port}") as sock:
        assert _read_all(sock) == b"SSH-2.0-banner\r\n"


def test_http_byte_counts_match_what_was_sent(proxy: Proxy) -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    origin = RawOrigin(None, reply)
    request = (
        f"GET http://raw.test:{origin.port}/x HTTP/1.1\r\nHost: raw.test:{origin.port}\r\n"
        "User-Agent: test\r\n\r\n"
    ).encode()
    response = raw_exchange(proxy.port, request)
    assert response.endswith(b"\r\n\r\nhello")
    assert origin.received.startswith(b"GET /x HTTP/1.1\r\n")
    assert b"Connection: close\r\n" in origin.received
    (event,) = proxy.wait_events(1)
    assert event.bytes_up == len(origin.received)
    assert event.bytes_down == len(response)


@pytest.mark.parametrize(
    "reply",
    [
        b"",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ],
)
def test_a_broken_origin_is_a_502(proxy: Proxy, reply: bytes) -> None:
    origin = RawOrigin(None, reply)
    request = f"GET http://raw.test:{origin.port}/ HTTP/1.1\r\nHost: raw.test\r\n\r\n"
    response = raw_exchange(proxy.port, request.encode())
    assert response.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert_still_serving(proxy)


# ---------------------------------------------------------------------------------------------
# Warn and bypass


def test_http_warn_shows_a_page_whose_continue_lets_the_app_through(proxy: Proxy) -> None:
    with client(proxy) as http:
        warned = http.get("http://warn.example/doc")
        assert warned.status_code == 403
        assert "warnapp is not sanctioned" in warned.text
        done = continue_form(proxy, warned.text)
        assert (done.status_code, done.reason_phrase) == (303, "See Other")
        assert done.headers["location"] == "http://warn.example/doc"
        assert http.get("http://warn.example/doc").text == "hello from warn.example/doc"
    actions = [(e.action, e.domain) for e in proxy.wait_events(3)]
    assert actions == [
        (EventAction.WARNED, "warn.example"),
        (EventAction.BYPASSED, "warn.example"),  # the click on "Continue"
        (EventAction.BYPASSED, "warn.example"),  # the request that passed because of it
    ]
    saved = json.loads((proxy.frontend.bypasses.path or Path()).read_text())
    # The bypass is the OS user's behind the client (this test's), found from its socket.
    me = pwd.getpwuid(os.getuid()).pw_name
    assert [(b["user"], b["app"]) for b in saved["bypasses"]] == [(me, "warnapp")]


@needs_curl
def test_https_warn_notifies_a_loopback_page_then_the_retry_passes(
    proxy: Proxy, ca_file: Path
) -> None:
    first = curl(proxy, "https://warn.example/", "--cacert", str(ca_file))
    assert first.returncode != 0
    ((title, body),) = proxy.wait_notifications(1)
    assert title == "warnapp needs your confirmation"
    url = re.search(r"http://\S+", body)
    assert url is not None
    assert url.group(0) == f"{proxy.url}/warn?host=warn.example"
    page = httpx.get(url.group(0), timeout=10)
    assert page.status_code == 200
    assert continue_form(proxy, page.text).headers["location"] == "https://warn.example/"
    retry = curl(proxy, "https://warn.example/", "--cacert", str(ca_file))
    assert retry.returncode == 0, retry.stderr
    assert retry.stdout == "hello from warn.example/"
    assert [e.action for e in proxy.wait_events(3)] == [
        EventAction.WARNED,
        EventAction.BYPASSED,
        EventAction.BYPASSED,
    ]


def test_the_in_band_continue_only_takes_a_post(proxy: Proxy) -> None:
    with client(proxy) as http:
        url = "http://warn.example/.well-known/enforcer/continue"
        assert http.get(url).status_code == 405
        assert http.post(url, data={"host": "warn.example"}).status_code == 403
        # On a site that is not warned, the path is the site's own.
        other = http.get("http://allowed.test/.well-known/enforcer/continue")
        assert other.text == "hello from allowed.test/.well-known/enforcer/continue"
    assert proxy.call(lambda: proxy.frontend.bypasses.active()) == {}


def test_a_bypass_expires(proxy: Proxy) -> None:
    with client(proxy) as http:
        continue_form(proxy, http.get("http://warn.example/").text)
        assert http.get("http://warn.example/").status_code == 200
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=24, minutes=1)
        proxy.call(lambda: setattr(proxy.frontend, "clock", lambda: later))
        assert http.get("http://warn.example/").status_code == 403


def test_warn_page_through_the_proxy_itself(proxy: Proxy) -> None:
    # A browser that sends even loopback requests through its proxy reaches the same page.
    with client(proxy) as http:
        page = http.get(f"{proxy.url}/warn?host=warn.example")
        assert page.status_code == 200
        assert "Continue to warnapp for 24 hours" in page.text


def test_a_forged_continue_is_refused(proxy: Proxy) -> None:
    page = httpx.get(f"{proxy.url}/warn?host=warn.example", timeout=10)
    fields = form_fields(page.text)
    forged = httpx.post(f"{proxy.url}/continue", data={**fields, "token": "0" * 64}, timeout=10)
    assert forged.status_code == 403
    odd = httpx.post(f"{proxy.url}/continue", data={**fields, "token": "é"}, timeout=10)
    assert odd.status_code == 403
    later = {**fields, "expires": str(int(fields["expires"]) + 1)}
    assert httpx.post(f"{proxy.url}/continue", data=later, timeout=10).status_code == 403
    assert proxy.call(lambda: proxy.frontend.bypasses.active()) == {}


def test_only_warn_names_have_a_warning_page(proxy: Proxy) -> None:
    assert httpx.get(f"{proxy.url}/warn?host=blocked.example", timeout=10).status_code == 404
    assert httpx.get(f"{proxy.url}/warn?host=allowed.test", timeout=10).status_code == 404
    assert httpx.get(f"{proxy.url}/warn", timeout=10).status_code == 400
    assert httpx.get(f"{proxy.url}/other", timeout=10).status_code == 404


def test_the_pages_refuse_a_foreign_host_header(proxy: Proxy) -> None:
    # DNS rebinding: a page at evil.test resolving to 127.0.0.1 must not read a token.
    response = httpx.get(
        f"{proxy.url}/warn?host=warn.example", headers={"Host": "evil.test"}, timeout=10
    )
    assert response.status_code == 400


def test_the_return_url_stays_on_the_bypassed_host(proxy: Proxy) -> None:
    page = httpx.get(f"{proxy.url}/warn?host=warn.example&return=https://evil.test/", timeout=10)
    assert form_fields(page.text)["return"] == "https://warn.example/"


# ---------------------------------------------------------------------------------------------
# Malformed input


def assert_still_serving(proxy: Proxy) -> None:
    with client(proxy) as http:
        assert http.get("http://allowed.test/ok").text == "hello from allowed.test/ok"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"\x00\xff garbage \r\n\r\n", b"400"),
        (b"GET\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\n\r\n", b"400"),  # origin-form without Host
        (b"GET http://allowed.test/ HTTP/2.0\r\nHost: allowed.test\r\n\r\n", b"505"),
        (b"GET https://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n", b"501"),
        (b"GET http://user@allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n", b"400"),
        (b"GET http://bad_host!/ HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (b"CONNECT allowed.test HTTP/1.1\r\n\r\n", b"400"),  # no port
        (b"CONNECT allowed.test:99999 HTTP/1.1\r\n\r\n", b"400"),
        (b"CONNECT [::1 HTTP/1.1\r\n\r\n", b"400"),
        (b"GET http://allowed.test/ HTTP/1.1\r\nBad Header\r\n\r\n", b"400"),
        (b"GET http://allowed.test/ HTTP/1.1\r\n X: folded\r\n\r\n", b"400"),
        (
            b"POST http://allowed.test/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            b"400",
        ),
        (b"POST http://allowed.test/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n", b"400"),
        (b"POST http://allowed.test/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", b"501"),
        (b"GET http://allowed.test/ HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", b"431"),
        (b"GET http://allowed.test/ HTTP/1.1\r\nX: " + b"y" * 70_000 + b"\r\n\r\n", b"431"),
    ],
)
def test_malformed_requests_get_a_4xx_and_the_proxy_goes_on(
    proxy: Proxy, request_bytes: bytes, status: bytes
) -> None:
    response = raw_exchange(proxy.port, request_bytes)
    assert response.split(b" ")[1] == status, response[:200]
    assert_still_serving(proxy)
    assert not any(e.action is EventAction.BLOCKED for e in proxy.events)


def test_a_bad_chunked_body_does_not_hang(proxy: Proxy) -> None:
    request = (
        b"POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    )
    response = raw_exchange(proxy.port, request)
    assert response == b"" or response.split(b" ")[1] in (b"400", b"502")
    assert_still_serving(proxy)


def test_an_early_close_is_harmless(proxy: Proxy) -> None:
    assert raw_exchange(proxy.port, b"") == b""
    truncated = raw_exchange(proxy.port, b"GET http://allowed.test/ HTT")
    assert truncated.startswith(b"HTTP/1.1 400 ")
    assert_still_serving(proxy)


def test_a_slow_client_is_timed_out(impatient_proxy: Proxy) -> None:
    with socket.create_connection(("127.0.0.1", impatient_proxy.port), timeout=5) as sock:
        sock.sendall(b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed")
        started = time.monotonic()
        response = _read_all(sock)
        assert time.monotonic() - started < 3
    assert response.startswith(b"HTTP/1.1 408 ")
    assert_still_serving(impatient_proxy)


def test_a_slow_client_hello_is_timed_out(impatient_proxy: Proxy) -> None:
    with connect_tunnel(impatient_proxy.port, "allowed.test:443") as sock:
        sock.sendall(client_hello("allowed.test")[:20])
        assert _read_all(sock) == b""
    assert_still_serving(impatient_proxy)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_the_head_parser_raises_only_bad_request(data: bytes) -> None:
    for candidate in (data + b"\r\n\r\n", b"GET http://a.test/ HTTP/1.1\r\n" + data + b"\r\n\r\n"):
        try:
            head = parse_head(candidate)
        except BadRequest as exc:
            assert 400 <= exc.status < 600
            continue
        for parse in (parse_absolute, parse_authority):
            with contextlib.suppress(BadRequest):
                parse(head.target)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_target_parsers_raise_only_bad_request(text: str) -> None:
    for parse in (parse_absolute, parse_authority, lambda t: parse_authority(t, 80)):
        try:
            target = parse(text)
        except BadRequest:
            continue
        assert 0 < target.port < 65536


# ---------------------------------------------------------------------------------------------
# Bypass store, pages, notifications


def test_bypasses_expire_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    store = BypassStore(path, ttl=dt.timedelta(hours=2))
    assert store.grant("alice", "warnapp", now) == now + dt.timedelta(hours=2)
    again = BypassStore(path, ttl=dt.timedelta(hours=2))
    assert again.is_bypassed("alice", "warnapp", now + dt.timedelta(hours=1))
    assert not again.is_bypassed("bob", "warnapp", now + dt.timedelta(hours=1))
    assert not again.is_bypassed("alice", "warnapp", now + dt.timedelta(hours=2))
    again.revoke("alice", "warnapp")
    assert not BypassStore(path).is_bypassed("alice", "warnapp", now)


def test_a_damaged_bypass_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text("{not json")
    store = BypassStore(path)
    assert store.active() == {}
    store.grant("alice", "x")
    assert BypassStore(path).is_bypassed("alice", "x")


def test_the_bypass_ttl_is_configurable() -> None:
    with pytest.raises(ValueError):
        BypassStore(ttl=dt.timedelta(0))
    assert pages.describe_ttl(dt.timedelta(hours=1)) == "1 hour"
    assert pages.describe_ttl(dt.timedelta(minutes=90)) == "90 minutes"


def test_pages_escape_what_they_show() -> None:
    page = pages.block_page(app="<b>", host="h", indicator="i", action="block").decode()
    assert "&lt;b&gt;" in page
    assert "<b>" not in page


def test_a_failing_notification_tool_is_harmless(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify_module, "command", lambda title, body: ["/nonexistent/tool"])
    notify_module.notify("title", "body")


def test_the_notification_command_quotes_its_arguments() -> None:
    linux = command("t", "-body", platform="linux")
    if linux is not None:
        assert linux[-3:] == ["--", "t", "-body"]
    mac = command('say "hi"', "b\\", platform="darwin")
    if mac is not None:
        assert mac[-1] == 'display notification "b\\\\" with title "say \\"hi\\""'
