"""Proxy edge cases an attacker tries: a CONNECT to an address that then names a blocked host,
a warning's "Continue" replayed or used by someone else, a proxy or resolver that other hosts
can reach.

The proxy runs as in ``test_proxy`` (its fixtures, origins on free ports of 127.0.0.1), with
a `connect` that also reaches 127.0.0.1 itself, which is what a client names in
``CONNECT 127.0.0.1:PORT``.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enforcer.models import EventAction
from enforcer.shim.proxy.http1 import starts_request
from tests.shim.test_proxy import (
    KNOWN_NAMES,
    OriginHandler,
    Proxy,
    _read_all,
    ca,  # noqa: F401 (fixture)
    ca_file,  # noqa: F401 (fixture)
    form_fields,
    origins,  # noqa: F401 (fixture)
    proxy,  # noqa: F401 (fixture)
    serve_in_thread,
)
from tests.shim.test_tls import client_hello

pytestmark = pytest.mark.timeout(60)

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")
SETPRIV = shutil.which("setpriv")
as_nobody_too = pytest.mark.skipif(
    CURL is None or SETPRIV is None or os.getuid() != 0,
    reason="needs curl, setpriv and root (to run a client as another OS user)",
)
ME = pwd.getpwuid(os.getuid()).pw_name


class RecordingHandler(OriginHandler):
    """The test origin, remembering the Host of every request that reached it."""

    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers["Host"])
        super().do_GET()


@pytest.fixture
def origin() -> Iterator[tuple[int, list[str]]]:
    """A plain-HTTP origin on 127.0.0.1 (its port) and the Host of each request it got."""
    seen: list[str] = []
    handler = type("Handler", (RecordingHandler,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = serve_in_thread(server)
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def by_address(proxy: Proxy, origins: tuple[int, int]) -> Proxy:  # noqa: F811
    """The proxy, able to connect to 127.0.0.1 by address as well as to the test names."""
    plain_port, tls_port = origins

    async def connect(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if host != "127.0.0.1" and host not in KNOWN_NAMES:
            raise OSError(f"{host} does not resolve")
        if host != "127.0.0.1":
            port = {80: plain_port, 443: tls_port}.get(port, port)
        return await asyncio.open_connection("127.0.0.1", port)

    proxy.call(lambda: setattr(proxy.frontend, "connect", connect))
    return proxy


def tunnel(through: Proxy, target: str) -> socket.socket:
    """A client socket whose CONNECT to `target` the proxy accepted."""
    sock = socket.create_connection(("127.0.0.1", through.port), timeout=5)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(1)
        assert chunk, answer
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    return sock


def through_tunnel(through: Proxy, target: str, data: bytes) -> bytes:
    """Send `data` inside a tunnel to `target`, half-close, and read all that comes back."""
    with tunnel(through, target) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return _read_all(sock)


# ---------------------------------------------------------------------------------------------
# CONNECT to an address, then a name inside


def test_a_blocked_host_inside_a_connect_to_an_address_is_denied(
    by_address: Proxy, origin: tuple[int, list[str]]
) -> None:
    port, seen = origin
    request = b"GET /secret HTTP/1.1\r\nHost: www.blocked.example\r\n\r\n"
    answer = through_tunnel(by_address, f"127.0.0.1:{port}", request)
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"Bad App is blocked" in answer
    assert seen == []  # the origin never saw the request
    (event,) = by_address.wait_events(1)
    assert (event.action, event.domain, event.indicator) == (
        EventAction.BLOCKED,
        "www.blocked.example",
        "blocked.example",
    )
    assert event.dest_port == port


def test_an_allowed_host_inside_a_connect_to_an_address_is_relayed_request_by_request(
    by_address: Proxy, origin: tuple[int, list[str]]
) -> None:
    port, seen = origin
    # Two requests on one tunnel: the second names a blocked host and must not ride on the
    # first one's decision.
    requests = (
        b"GET /a HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
        b"GET /b HTTP/1.1\r\nHost: blocked.example\r\n\r\n"
    )
    answer = through_tunnel(by_address, f"127.0.0.1:{port}", requests)
    first, _, second = answer.partition(b"hello from allowed.test/a")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert second.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert seen == ["allowed.test"]
    events = by_address.wait_events(2)
    assert [(e.action, e.domain) for e in events] == [
        (EventAction.ALLOWED, "allowed.test"),
        (EventAction.BLOCKED, "blocked.example"),
    ]


def test_a_request_for_a_proxy_inside_a_tunnel_is_decided_on_its_target(
    by_address: Proxy, origin: tuple[int, list[str]]
) -> None:
    port, seen = origin
    request = b"GET http://blocked.example/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
    answer = through_tunnel(by_address, f"127.0.0.1:{port}", request)
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert seen == []


def test_a_warned_host_inside_a_tunnel_gets_the_warning_page(
    by_address: Proxy, origin: tuple[int, list[str]]
) -> None:
    port, seen = origin
    request = b"GET / HTTP/1.1\r\nHost: warn.example\r\n\r\n"
    answer = through_tunnel(by_address, f"127.0.0.1:{port}", request)
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"warnapp is not sanctioned" in answer
    assert seen == []


@pytest.mark.parametrize(
    "split",
    [
        [b"GET", b" / HTTP/1.1\r\nHost: blocked.example\r\n\r\n"],
        [b"GET / HTTP/1.1\r\nHo", b"st: blocked.example\r\n\r\n"],
    ],
)
def test_a_request_split_across_writes_is_still_read(
    by_address: Proxy, origin: tuple[int, list[str]], split: list[bytes]
) -> None:
    port, seen = origin
    with tunnel(by_address, f"127.0.0.1:{port}") as sock:
        for part in split:
            sock.sendall(part)
            threading.Event().wait(0.2)
        sock.shutdown(socket.SHUT_WR)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert seen == []


def test_other_protocols_in_a_tunnel_are_still_relayed(by_address: Proxy) -> None:
    # An SSH-like client line is not HTTP: relayed byte for byte as before.
    server = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            got.append(conn.recv(100))
            conn.sendall(b"SSH-2.0-test-server\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    answer = through_tunnel(
        by_address, f"127.0.0.1:{server.getsockname()[1]}", b"SSH-2.0-test-client\r\n"
    )
    thread.join(5)
    server.close()
    assert got == [b"SSH-2.0-test-client\r\n"]
    assert answer == b"SSH-2.0-test-server\r\n"


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=60),
        st.builds(
            lambda method, target, rest: method + b" " + target + b" HTTP/1.1\r\n" + rest,
            st.sampled_from([b"GET", b"POST", b"PROPFIND", b"X-CUSTOM"]),
            st.binary(min_size=1, max_size=20).filter(lambda t: b" " not in t),
            st.binary(max_size=20),
        ),
    ),
    st.integers(min_value=0, max_value=80),
)
def test_the_http_check_only_settles_once_it_is_sure(data: bytes, cut: int) -> None:
    # However a client splits its first bytes, a prefix that is settled (True or False) stays
    # settled the same way when more arrives: the tunnel reads on only while it cannot tell.
    whole = starts_request(data)
    prefix = starts_request(data[:cut])
    if prefix is not None:
        assert whole is prefix


@needs_curl
def test_curl_tunnelling_plain_http_to_an_address_is_denied(
    by_address: Proxy, origin: tuple[int, list[str]]
) -> None:
    # curl --proxytunnel with --connect-to: "CONNECT 127.0.0.1:PORT", then a request whose
    # Host is the blocked name, as a client that resolved the name elsewhere would send.
    port, seen = origin
    assert CURL is not None
    common = [CURL, "-sS", "--max-time", "10", "-x", by_address.url, "--proxytunnel"]
    connect_to = f"blocked.example:80:127.0.0.1:{port}"
    blocked = subprocess.run(
        [*common, "--connect-to", connect_to, "-w", "%{http_code}", "http://blocked.example/"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert blocked.stdout.endswith("403"), blocked.stderr
    assert "Bad App is blocked" in blocked.stdout
    allowed = subprocess.run(
        [*common, "--connect-to", f"allowed.test:80:127.0.0.1:{port}", "http://allowed.test/x"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert allowed.stdout == "hello from allowed.test/x", allowed.stderr
    assert seen == ["allowed.test"]


def test_a_blocked_sni_inside_a_connect_to_an_address_is_denied(
    by_address: Proxy,
    origins: tuple[int, int],  # noqa: F811
    ca_file: Path,  # noqa: F811
) -> None:
    _, tls_port = origins
    with tunnel(by_address, f"127.0.0.1:{tls_port}") as sock:
        sock.sendall(client_hello("www.blocked.example"))
        answer = _read_all(sock)
    assert answer == b"\x15\x03\x01\x00\x02\x02\x31"  # TLS alert access_denied
    (event,) = by_address.wait_events(1)
    assert (event.action, event.domain) == (EventAction.BLOCKED, "www.blocked.example")
    # The same tunnel with an allowed name completes a real handshake.
    context = ssl.create_default_context(cafile=str(ca_file))
    sock = tunnel(by_address, f"127.0.0.1:{tls_port}")
    with context.wrap_socket(sock, server_hostname="allowed.test") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
        assert b"hello from allowed.test/" in _read_all(tls)


# ---------------------------------------------------------------------------------------------
# A warning's "Continue": once, and only by whom it was shown to


def warn_page(shim: Proxy) -> dict[str, str]:
    """The hidden fields of the loopback warning page for warn.example."""
    page = httpx.get(f"{shim.url}/warn?host=warn.example", timeout=10)
    assert page.status_code == 200
    return form_fields(page.text)


def bypassed(shim: Proxy) -> set[str]:
    """The users holding a bypass."""
    return {user for user, _ in shim.call(lambda: shim.frontend.bypasses.active())}


def test_a_continue_token_works_once(proxy: Proxy) -> None:  # noqa: F811
    fields = warn_page(proxy)
    done = httpx.post(f"{proxy.url}/continue", data=fields, timeout=10)
    assert done.status_code == 303
    assert len(bypassed(proxy)) == 1
    # The bypass ends (revoked here; an expiry is the same), and the old form is posted again.
    bypasses = proxy.frontend.bypasses

    def revoke_all() -> None:
        for key in list(bypasses.active()):
            bypasses.revoke(*key)

    proxy.call(revoke_all)
    replay = httpx.post(f"{proxy.url}/continue", data=fields, timeout=10)
    assert replay.status_code == 403
    assert "This confirmation was already used" in replay.text
    assert bypassed(proxy) == set()
    # A new page gives a new token.
    assert httpx.post(f"{proxy.url}/continue", data=warn_page(proxy), timeout=10).status_code == 303


def test_a_second_click_while_the_bypass_holds_is_not_an_error(proxy: Proxy) -> None:  # noqa: F811
    fields = warn_page(proxy)
    assert httpx.post(f"{proxy.url}/continue", data=fields, timeout=10).status_code == 303
    again = httpx.post(f"{proxy.url}/continue", data=fields, timeout=10)
    assert again.status_code == 200
    assert "You already chose to continue" in again.text


def nobody(*args: str) -> subprocess.CompletedProcess[str]:
    """curl run as the OS user nobody."""
    assert CURL is not None and SETPRIV is not None
    command = [SETPRIV, "--reuid=nobody", "--regid=nogroup", "--clear-groups", CURL]
    return subprocess.run(
        [*command, "-sS", "--max-time", "10", *args],
        capture_output=True,
        text=True,
        timeout=20,
    )


def post_args(fields: dict[str, str]) -> list[str]:
    return [arg for key, value in fields.items() for arg in ("--data-urlencode", f"{key}={value}")]


@as_nobody_too
def test_a_continue_token_is_the_user_s_own(proxy: Proxy) -> None:  # noqa: F811
    fields = warn_page(proxy)  # shown to this test's user
    stolen = nobody("-w", "\n%{http_code}", *post_args(fields), f"{proxy.url}/continue")
    assert stolen.stdout.endswith("\n403"), stolen.stderr
    assert f"shown to another user ({ME}), not to you (nobody)" in stolen.stdout
    assert bypassed(proxy) == set()
    # The refused attempt did not spend it: its user still can.
    assert httpx.post(f"{proxy.url}/continue", data=fields, timeout=10).status_code == 303
    assert bypassed(proxy) == {ME}


@as_nobody_too
def test_a_bypass_through_the_explicit_proxy_is_the_os_user_s_own(proxy: Proxy) -> None:  # noqa: F811
    # nobody confirms on its own warning page; this test's user is still warned.
    page = nobody(f"{proxy.url}/warn?host=warn.example")
    fields = form_fields(page.stdout)
    assert fields["user"] == "nobody"
    done = nobody(
        "-o", "/dev/null", "-w", "%{http_code}", *post_args(fields), f"{proxy.url}/continue"
    )
    assert done.stdout == "303"
    assert bypassed(proxy) == {"nobody"}
    assert nobody("-x", proxy.url, "http://warn.example/x").stdout == "hello from warn.example/x"
    with httpx.Client(proxy=proxy.url, timeout=10) as http:
        assert http.get("http://warn.example/x").status_code == 403


def test_without_an_os_user_the_client_address_owns_the_token(proxy: Proxy) -> None:  # noqa: F811
    # A client on another host (no process to find): its address stands for the user.
    proxy.call(lambda: setattr(proxy.frontend, "owner_of", lambda client, server: None))
    fields = warn_page(proxy)
    assert fields["user"] == "127.0.0.1"
    other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10)
    with other:
        refused = other.post(f"{proxy.url}/continue", data=fields)
        assert refused.status_code == 403
        assert "shown to another user (127.0.0.1), not to you (127.0.0.2)" in refused.text
    assert httpx.post(f"{proxy.url}/continue", data=fields, timeout=10).status_code == 303
    assert bypassed(proxy) == {"127.0.0.1"}
