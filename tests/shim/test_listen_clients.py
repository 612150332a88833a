"""A shim listener beyond loopback: it says so, and serves only the allowed client networks.

The refused client is real: a query or connection from this host's own address on another
interface (loopback is always served), to a listener on the wildcard address, with dnspython
and httpx as clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import httpx
import pytest
import structlog
from typer.testing import CliRunner

from enforcer.cli import app
from enforcer.decide.matcher import MatchEntry, Matcher
from enforcer.models import Action, Indicator
from enforcer.shim.clients import ClientFilter, for_listener, parse_networks
from enforcer.shim.dns.answer import DnsFrontEnd, DnsSettings
from enforcer.shim.dns.server import DnsServerHandle, refused, run_dns
from enforcer.shim.proxy.bypass import BypassStore
from enforcer.shim.proxy.frontend import ProxyFrontEnd, start_proxy
from tests.shim import test_agent as agent_tests
from tests.shim.conftest import FakeUpstream
from tests.shim.test_agent import Shim, free_dns_port, server  # noqa: F401 (fixture)
from tests.shim.test_sync import LiveServer, free_port

pytestmark = pytest.mark.timeout(60)

ENTRIES = [MatchEntry("blocked.example", Action.BLOCK, "badapp")]


def own_address() -> str | None:
    """An IPv4 address of this host that is not a loopback one, if it has one."""
    ip = shutil.which("ip")
    if ip is not None:
        shown = subprocess.run(
            [ip, "-o", "-4", "addr", "show", "scope", "global"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if "inet" in shown:
            return shown[shown.index("inet") + 1].partition("/")[0]
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        address = str(sock.getsockname()[0])
        return None if address.startswith("127.") else address
    return None


OWN = own_address()
needs_own_address = pytest.mark.skipif(OWN is None, reason="no address besides loopback")


class Loop:
    """An event loop in a thread, for servers the test's blocking clients talk to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


def start_dns(loop: Loop, upstream: FakeUpstream, allow: list[str] | None) -> DnsServerHandle:
    settings = DnsSettings(upstreams=(("127.0.0.1", upstream.port),))
    frontend = DnsFrontEnd(Matcher(ENTRIES), settings, ready=True)
    handle: DnsServerHandle = loop.call(run_dns(frontend, "0.0.0.0", 0, allow_clients=allow))
    return handle


def stop_dns(loop: Loop, handle: DnsServerHandle) -> None:
    async def close() -> None:
        handle.close()
        await handle.wait_closed()

    loop.call(close())


def ask(port: int, name: str, source: str, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, "A")
    send = dns.query.tcp if tcp else dns.query.udp
    where = source  # the listener is on the wildcard address: ask it at the source's own
    return send(query, where, port=port, source=source, timeout=5)


# ---------------------------------------------------------------------------------------------
# DNS


@needs_own_address
@pytest.mark.parametrize("tcp", [False, True])
def test_a_resolver_beyond_loopback_refuses_clients_outside_its_networks(
    loop: Loop, upstream: FakeUpstream, tcp: bool
) -> None:
    assert OWN is not None
    handle = start_dns(loop, upstream, ["198.51.100.0/24"])  # not this host's network
    try:
        port = handle.address[1]
        answer = ask(port, "blocked.example", OWN, tcp)
        assert answer.rcode() == dns.rcode.REFUSED
        assert [str(q.name) for q in answer.question] == ["blocked.example."]
        assert answer.answer == answer.authority == []
        # This host's own programs on loopback are still served.
        assert ask(port, "blocked.example", "127.0.0.1", tcp).rcode() == dns.rcode.NXDOMAIN
    finally:
        stop_dns(loop, handle)


@needs_own_address
def test_a_resolver_serves_the_networks_it_is_told(loop: Loop, upstream: FakeUpstream) -> None:
    assert OWN is not None
    handle = start_dns(loop, upstream, [f"{OWN}/32"])
    try:
        for tcp in (False, True):
            answer = ask(handle.address[1], "blocked.example", OWN, tcp)
            assert answer.rcode() == dns.rcode.NXDOMAIN
    finally:
        stop_dns(loop, handle)


def test_the_refusal_is_never_larger_than_the_query() -> None:
    query = dns.message.make_query("a.example", "A", use_edns=0, payload=4096)
    wire = query.to_wire()
    answer = refused(wire)
    assert answer is not None and len(answer) < len(wire)
    parsed = dns.message.from_wire(answer)
    assert query.is_response(parsed)
    assert parsed.rcode() == dns.rcode.REFUSED
    assert parsed.flags & dns.flags.QR
    response = dns.message.make_response(query).to_wire()
    assert refused(response) is None  # never answer an answer
    assert refused(b"\x00\x01") is None


# ---------------------------------------------------------------------------------------------
# Proxy


def start(loop: Loop, allow: list[str] | None) -> tuple[ProxyFrontEnd, asyncio.Server]:
    frontend = ProxyFrontEnd(
        Matcher(ENTRIES), bypasses=BypassStore(), notifier=lambda title, body: None, user="u"
    )
    listener = loop.call(start_proxy(frontend, "0.0.0.0", 0, allow_clients=allow))
    return frontend, listener


def stop(loop: Loop, listener: asyncio.Server) -> None:
    async def close() -> None:
        listener.close()
        await listener.wait_closed()

    loop.call(close())


@needs_own_address
def test_a_proxy_beyond_loopback_refuses_clients_outside_its_networks(loop: Loop) -> None:
    assert OWN is not None
    frontend, listener = start(loop, ["198.51.100.0/24"])
    try:
        url = f"http://{OWN}:{frontend.pages_port}"
        outside = httpx.Client(
            proxy=url, transport=httpx.HTTPTransport(local_address=OWN), timeout=5
        )
        with outside:
            with pytest.raises(httpx.ProxyError, match="403"):
                outside.get("https://blocked.example/")
            page = outside.get(f"{url}/proxy.pac")
        assert page.status_code == 403
        assert "this proxy does not serve you" in page.text
        assert frontend.clients is not None and frontend.clients.refused == 2
        # Loopback is served: its PAC file (a proxy page) answers.
        pac = httpx.get(f"http://127.0.0.1:{frontend.pages_port}/proxy.pac", timeout=5)
        assert pac.status_code == 200
    finally:
        stop(loop, listener)


def test_a_loopback_proxy_checks_no_client(loop: Loop) -> None:
    frontend = ProxyFrontEnd(Matcher(ENTRIES), bypasses=BypassStore(), user="u")
    listener = loop.call(start_proxy(frontend, "127.0.0.1", 0))
    try:
        assert frontend.clients is None
    finally:
        stop(loop, listener)


# ---------------------------------------------------------------------------------------------
# The rule, the warnings, the settings


def test_the_default_serves_loopback_and_private_networks_only() -> None:
    with structlog.testing.capture_logs():
        clients = for_listener("dns", "0.0.0.0", 53, None)
    assert clients is not None
    for address in ("127.0.0.1", "::1", "10.1.2.3", "172.31.0.9", "192.168.1.20", "fd00::7",
                    "fe80::1%eth0", "169.254.1.1", "::ffff:192.168.1.20"):  # fmt: skip
        assert clients.allows(address), address
    for address in ("8.8.8.8", "192.0.2.2", "100.64.0.1", "2001:db8::1", "::ffff:8.8.8.8", ""):
        assert not clients.allows(address), address
    assert clients.refused == 6


def test_beyond_loopback_the_shim_warns_and_names_what_it_serves() -> None:
    with structlog.testing.capture_logs() as logged:
        assert for_listener("dns", "127.0.0.1", 53, None) is None
        assert for_listener("proxy", "localhost", 3128, None) is None
        for_listener("proxy", "0.0.0.0", 3128, ["10.0.0.0/8"])
        for_listener("dns", "::", 53, ["0.0.0.0/0", "::/0"])
    assert [(e["event"], e["log_level"]) for e in logged] == [
        ("proxy.listening_beyond_loopback", "warning"),
        ("dns.open_resolver", "warning"),
    ]
    assert logged[0]["allowed_clients"] == ["10.0.0.0/8", "127.0.0.0/8", "::1/128"]
    assert "open resolver" in logged[1]["detail"]


def test_an_explicit_list_applies_to_a_loopback_listener_too() -> None:
    clients = for_listener("dns", "127.0.0.1", 53, ["10.0.0.0/8"])
    assert isinstance(clients, ClientFilter)
    assert clients.allows("127.0.0.1") and clients.allows("10.9.9.9")
    assert not clients.allows("192.168.0.1")


def test_a_bad_network_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not an address or network"):
        parse_networks(["10.0.0.0/8", "10.0.0.0/33"])


def test_the_cli_refuses_a_bad_network(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("s" * 32)
    result = CliRunner().invoke(
        app,
        ["shim", "--server", "http://127.0.0.1:9", "--enroll-secret-file", str(tmp_path / "s"),
         "--state-dir", str(tmp_path), "--allow-clients", "10.0.0.0/8,nonsense"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--allow-clients" in result.output
    assert "'nonsense' is not an address or network" in result.output


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from enforcer.config import Settings

    monkeypatch.setenv("ENFORCER_SHIM_ALLOW_CLIENTS", "10.0.0.0/8, 192.168.0.0/16")
    assert Settings().shim_allow_clients == ["10.0.0.0/8", "192.168.0.0/16"]
    monkeypatch.setenv("ENFORCER_SHIM_ALLOW_CLIENTS", "10.0.0.0/33")
    with pytest.raises(ValueError, match="is not an address or network"):
        Settings()


# ---------------------------------------------------------------------------------------------
# The whole `enforcer shim` process


@needs_own_address
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("env", "flag"),
    [("198.51.100.0/24", None), ("0.0.0.0/0", "198.51.100.0/24")],
    ids=["setting", "flag-over-setting"],
)
def test_enforcer_shim_beyond_loopback_refuses_outsiders(
    server: LiveServer,  # noqa: F811
    upstream: FakeUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: str,
    flag: str | None,
) -> None:
    assert OWN is not None
    server.add(Indicator("blocked.example", Action.BLOCK))
    dns_port, proxy_port = free_dns_port(), free_port()
    # The shim harness listens on ports it picks; these make it pick the wildcard's.
    monkeypatch.setattr(agent_tests, "free_dns_port", lambda: dns_port)
    monkeypatch.setattr(agent_tests, "free_port", lambda: proxy_port)
    monkeypatch.setenv("ENFORCER_SHIM_ALLOW_CLIENTS", env)
    extra = ["--dns-listen", f"0.0.0.0:{dns_port}", "--proxy-listen", f"0.0.0.0:{proxy_port}"]
    if flag is not None:
        extra += ["--allow-clients", flag]
    shim = Shim(server.url, tmp_path / "state", upstream.port, *extra, log_file=tmp_path / "log")
    try:
        shim.wait_for(lambda: shim.dig("blocked.example")[0] == "NXDOMAIN")  # from loopback
        assert ask(dns_port, "blocked.example", OWN).rcode() == dns.rcode.REFUSED
        outside = httpx.Client(
            proxy=f"http://{OWN}:{proxy_port}",
            transport=httpx.HTTPTransport(local_address=OWN),
            timeout=5,
        )
        with outside, pytest.raises(httpx.ProxyError, match="403"):
            outside.get("https://allowed.example.test/")
    finally:
        assert shim.stop() == 0
    events = {json.loads(line)["event"] for line in shim.log().splitlines() if line.startswith("{")}
    assert {"dns.listening_beyond_loopback", "proxy.listening_beyond_loopback"} <= events
