"""``--parent-proxy``: allowed traffic leaves through a corporate proxy, denied traffic never.

The parent here is a tiny proxy started by the test on 127.0.0.1: it records every request
head it receives, answers CONNECT with a tunnel and absolute-form requests by fetching them
from the test's origin servers, and can be told to want credentials or to refuse.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from enforcer.cli import app
from enforcer.models import EventAction
from enforcer.shim.agent import Agent, AgentSettings
from enforcer.shim.dns.answer import DnsSettings
from enforcer.shim.proxy.frontend import ProxyFrontEnd
from enforcer.shim.proxy.parent import ParentProxy
from tests.shim.test_proxy import (  # noqa: F401 - fixtures used by name
    CURL,
    KNOWN_NAMES,
    Proxy,
    ca,
    ca_file,
    needs_curl,
    origins,
    start,
)

pytestmark = [pytest.mark.timeout(60), needs_curl]

USER, PASSWORD = "alice", "s3cret:word"
GOOD_AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@dataclass
class Parent:
    """The test's parent proxy: its port, what it received, and how it answers."""

    origins: tuple[int, int]
    port: int = 0
    heads: list[str] = field(default_factory=list)
    refuse: int = 0
    """Answer every request with this status (0: serve it)."""
    want_auth: bool = True

    def origin_port(self, authority: str) -> int:
        host, _, port = authority.partition(":")
        assert host in KNOWN_NAMES, host
        return {"80": self.origins[0], "443": self.origins[1]}[port or "80"]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            self.heads.append(head)
            method, target, _ = head.split("\r\n", 1)[0].split(" ")
            auth = [
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("proxy-authorization:")
            ]
            status = self.refuse or (407 if self.want_auth and auth != [GOOD_AUTH] else 0)
            if status:
                body = b"refused by the parent\n"
                writer.write(
                    f"HTTP/1.1 {status} Refused\r\nContent-Length: {len(body)}\r\n"
                    f"Proxy-Authenticate: Basic realm=corp\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                return
            if method == "CONNECT":
                up_reader, up_writer = await asyncio.open_connection(
                    "127.0.0.1", self.origin_port(target)
                )
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                authority, _, path = target.removeprefix("http://").partition("/")
                up_reader, up_writer = await asyncio.open_connection(
                    "127.0.0.1", self.origin_port(authority)
                )
                up_writer.write(head.replace(target, "/" + path, 1).encode("latin-1"))
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with_eof = True
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except ConnectionError:
        with_eof = False
    if with_eof and dst.can_write_eof() and not dst.is_closing():
        dst.write_eof()


@pytest.fixture
def parent(origins: tuple[int, int]) -> Iterator[Parent]:  # noqa: F811
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake = Parent(origins)
    server = asyncio.run_coroutine_threadsafe(
        asyncio.start_server(fake.handle, "127.0.0.1", 0), loop
    ).result(5)
    fake.port = server.sockets[0].getsockname()[1]
    yield fake
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.fixture
def proxy(tmp_path: Path, origins: tuple[int, int], parent: Parent) -> Iterator[Proxy]:  # noqa: F811
    url = f"http://{USER}:{PASSWORD.replace(':', '%3A')}@127.0.0.1:{parent.port}"
    for running in start(tmp_path, origins):
        running.call(functools.partial(use_parent, running.frontend, ParentProxy.parse(url)))
        yield running


def use_parent(frontend: ProxyFrontEnd, parent: ParentProxy) -> None:
    frontend.parent = parent
    # With a parent, the shim connects to nothing but the parent: real connections.
    frontend.connect = asyncio.open_connection


def curl(proxy: Proxy, *args: str) -> subprocess.CompletedProcess[str]:
    assert CURL is not None
    argv = [CURL, "-sS", "--max-time", "10", "-x", proxy.url, "-w", "\n%{http_code}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=20)


def test_tls_goes_through_the_parent_as_a_connect(
    proxy: Proxy,
    parent: Parent,
    ca_file: Path,  # noqa: F811
) -> None:
    result = curl(proxy, "--cacert", str(ca_file), "https://allowed.test/tls")
    assert result.stdout == "hello from allowed.test/tls\n200", result.stderr
    (head,) = parent.heads
    assert head.startswith("CONNECT allowed.test:443 HTTP/1.1\r\n")
    assert f"Proxy-Authorization: {GOOD_AUTH}\r\n" in head
    (event,) = proxy.wait_events(1)
    assert event.action is EventAction.ALLOWED and event.bytes_down > 0


def test_plain_http_goes_to_the_parent_in_absolute_form(proxy: Proxy, parent: Parent) -> None:
    result = curl(proxy, "http://allowed.test/a", "http://allowed.test/b")
    assert result.stdout == "hello from allowed.test/a\n200hello from allowed.test/b\n200"
    assert [head.split("\r\n", 1)[0] for head in parent.heads] == [
        "GET http://allowed.test/a HTTP/1.1",
        "GET http://allowed.test/b HTTP/1.1",
    ]
    assert all(f"Proxy-Authorization: {GOOD_AUTH}\r\n" in head for head in parent.heads)


def test_denied_traffic_never_reaches_the_parent(
    proxy: Proxy,
    parent: Parent,
    ca_file: Path,  # noqa: F811
) -> None:
    assert curl(proxy, "http://blocked.example/").stdout.endswith("\n403")
    curl(proxy, "--cacert", str(ca_file), "https://blocked.example/")
    assert parent.heads == []


@pytest.mark.parametrize(("refusal", "status"), [(407, "502"), (403, "403"), (502, "502")])
def test_a_refusing_parent_is_a_clear_error(
    proxy: Proxy,
    parent: Parent,
    ca_file: Path,  # noqa: F811
    refusal: int,
    status: str,
) -> None:
    parent.refuse = refusal
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
        answer = sock.makefile("rb").read().decode()
    assert answer.startswith(f"HTTP/1.1 {status} ")
    assert f"the parent proxy 127.0.0.1:{parent.port} refused CONNECT allowed.test:443: " in answer
    assert f"HTTP/1.1 {refusal} Refused" in answer
    plain = curl(proxy, "http://allowed.test/")
    if refusal == 407:
        assert plain.stdout.endswith("\n502")
        assert "credentials" in plain.stdout
    else:  # a plain-HTTP refusal is the parent's own page
        assert plain.stdout == f"refused by the parent\n\n{refusal}"
    events = proxy.wait_events(2)
    assert [(e.domain, e.action, e.bytes_down) for e in events[:1]] == [
        ("allowed.test", EventAction.ALLOWED, 0)
    ]


def test_parent_without_credentials_is_told_to_the_client(proxy: Proxy, parent: Parent) -> None:
    proxy.call(lambda: setattr(proxy.frontend, "parent", ParentProxy("127.0.0.1", parent.port)))
    result = curl(proxy, "http://allowed.test/")
    assert result.stdout.endswith("\n502")
    assert "the parent proxy asks for credentials (407)" in result.stdout


def test_the_url_is_read_and_its_password_never_shown() -> None:
    parent = ParentProxy.parse("http://bob:p%40ss@proxy.corp:8080")
    assert (parent.host, parent.port, parent.authority) == ("proxy.corp", 8080, "proxy.corp:8080")
    assert parent.authorization == b"Basic " + base64.b64encode(b"bob:p@ss")
    assert "p@ss" not in repr(parent) and "p%40ss" not in repr(parent)
    assert ParentProxy.parse(parent.url) == parent
    assert ParentProxy.parse("http://proxy.corp").port == 3128
    for bad in ("https://proxy.corp:3128", "proxy.corp:3128", "http://proxy.corp:99999",
                "http://proxy.corp:3128/path", "http://bad host:1"):  # fmt: skip
        with pytest.raises(ValueError, match="parent proxy"):
            ParentProxy.parse(bad)


def test_the_cli_refuses_a_bad_parent_url(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["shim", "--server", "http://127.0.0.1:9", "--enroll-secret", "s" * 32,
         "--state-dir", str(tmp_path), "--parent-proxy", "https://user:hunter2@proxy.corp"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--parent-proxy" in result.output and "http://" in result.output
    assert "hunter2" not in result.output


@pytest.mark.parametrize(
    ("server", "via_parent"),
    [("http://enforcer.test:8440", True), ("http://127.0.0.1:9", False)],
)
def test_the_sync_client_goes_through_the_parent_unless_the_server_is_local(
    tmp_path: Path, server: str, via_parent: bool
) -> None:
    heads: list[str] = []

    async def parent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            heads.append((await reader.readuntil(b"\r\n\r\n")).decode("latin-1"))
            writer.write(b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    async def scenario() -> None:
        listener = await asyncio.start_server(parent, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        settings = AgentSettings(
            server=server,
            enroll_secret="s" * 32,
            state_dir=tmp_path / "state",
            dns=DnsSettings(listen_host="127.0.0.1", listen_port=0),
            proxy_port=0,
            notifier=lambda title, body: None,
            parent_proxy=ParentProxy.parse(f"http://u:p@127.0.0.1:{port}"),
        )
        agent = Agent(settings)
        await agent.start()
        try:
            await asyncio.sleep(2)  # the first enrolment attempt is made at once
        finally:
            await agent.stop()
            listener.close()

    asyncio.run(scenario())
    if via_parent:
        assert heads, "the sync client did not go through the parent"
        assert heads[0].startswith("POST http://enforcer.test:8440/api/v1/")
        assert "Proxy-Authorization: Basic dTpw\r\n" in heads[0]
    else:
        assert heads == []
