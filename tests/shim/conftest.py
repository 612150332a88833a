"""Fixtures for the shim's front ends: a fake upstream resolver and a DNS server in a thread.

The fake upstream is a tiny authoritative server built on dnspython (the reference
implementation of the wire format), listening on UDP and TCP on a free port of 127.0.0.1.
It answers A queries for every name under ``example.test`` with TTL 3600, NXDOMAIN for names
under ``nx.test``, and a large (truncated over UDP) answer for ``big.example.test``.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from enforcer.decide.matcher import Matcher
from enforcer.models import NetworkEvent
from enforcer.shim.dns.answer import DnsFrontEnd, DnsSettings
from enforcer.shim.dns.server import DnsServerHandle, run_dns

UPSTREAM_TTL = 3600
BIG_NAME = "big.example.test."


def _respond(wire: bytes, tcp: bool) -> bytes | None:
    try:
        query = dns.message.from_wire(wire)
    except Exception:
        return None
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    question = query.question[0]
    name = question.name.to_text().lower()
    if name.endswith("nx.test."):
        response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(
            dns.rrset.from_text(
                "nx.test.", 300, "IN", "SOA", "ns.nx.test. h.nx.test. 1 3600 600 86400 300"
            )
        )
    elif name.endswith(".cname.test.") or name.endswith(".dname.test."):
        # Alias chains for deep CNAME inspection: `<label>.cname.test` -> mid.example.test ->
        # cdn.blocked.test; `<label>.dname.test` under a DNAME to blocked.test (with the
        # synthesised CNAME, as a resolver answers). The chain ends in an A record.
        label = name.split(".", 1)[0]
        if name.endswith(".cname.test."):
            chain = [(name, "mid.example.test."), ("mid.example.test.", "cdn.blocked.test.")]
            end = "cdn.blocked.test."
            if label == "safe":  # a chain that only passes allowed names
                chain, end = [(name, "www.example.test.")], "www.example.test."
        else:
            response.answer.append(
                dns.rrset.from_text("dname.test.", UPSTREAM_TTL, "IN", "DNAME", "blocked.test.")
            )
            end = f"{label}.blocked.test."
            chain = [(name, end)]
        for owner, target in chain:
            response.answer.append(dns.rrset.from_text(owner, UPSTREAM_TTL, "IN", "CNAME", target))
        if question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(end, UPSTREAM_TTL, "IN", "A", "192.0.2.66"))
    elif question.rdtype == dns.rdatatype.A:
        if name == BIG_NAME:
            addresses = [f"10.1.{i // 256}.{i % 256}" for i in range(100)]
            response.answer.append(
                dns.rrset.from_text_list(question.name, UPSTREAM_TTL, "IN", "A", addresses)
            )
        else:
            response.answer.append(
                dns.rrset.from_text(question.name, UPSTREAM_TTL, "IN", "A", "192.0.2.1")
            )
    if not tcp:
        return response.to_wire(max_size=query.payload if query.edns >= 0 else 512)
    return response.to_wire(max_size=65535)


@dataclass
class FakeUpstream:
    """The fake authoritative server: its address and the queries it received."""

    port: int
    queries: list[str] = field(default_factory=list)
    tcp_queries: list[str] = field(default_factory=list)


def _truncating_respond(wire: bytes, tcp: bool) -> bytes | None:
    try:
        return _respond(wire, tcp)
    except dns.exception.TooBig:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=65535)


def _bind_pair() -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same free port of 127.0.0.1 (retrying on a collision)."""
    for _ in range(100):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        return udp, tcp
    raise OSError("no port free for both UDP and TCP")


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    udp, tcp = _bind_pair()
    port = udp.getsockname()[1]
    tcp.listen(8)
    udp.settimeout(0.2)
    tcp.settimeout(0.2)
    fake = FakeUpstream(port)
    stop = threading.Event()

    def serve_udp() -> None:
        while not stop.is_set():
            try:
                wire, addr = udp.recvfrom(65535)
            except TimeoutError:
                continue
            fake.queries.append(dns.message.from_wire(wire).question[0].name.to_text())
            answer = _truncating_respond(wire, False)
            if answer is not None:
                udp.sendto(answer, addr)

    def serve_tcp() -> None:
        while not stop.is_set():
            try:
                conn, _ = tcp.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                (length,) = struct.unpack("!H", conn.recv(2))
                wire = b""
                while len(wire) < length:
                    wire += conn.recv(length - len(wire))
                fake.tcp_queries.append(dns.message.from_wire(wire).question[0].name.to_text())
                answer = _respond(wire, True)
                if answer is not None:
                    conn.sendall(struct.pack("!H", len(answer)) + answer)

    threads = [threading.Thread(target=f, daemon=True) for f in (serve_udp, serve_tcp)]
    for t in threads:
        t.start()
    yield fake
    stop.set()
    for t in threads:
        t.join(5)
    udp.close()
    tcp.close()


class ShimServer:
    """A `DnsFrontEnd` served by `run_dns` on its own event loop in a thread."""

    def __init__(self, frontend: DnsFrontEnd) -> None:
        self.frontend = frontend
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.handle: DnsServerHandle = self.call(run_dns(frontend, "127.0.0.1", 0))
        self.port = self.handle.address[1]

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def run(self, func: Callable[[], Any]) -> Any:
        """Run a plain function on the server's loop (between two queries) and wait."""

        async def wrapper() -> Any:
            return func()

        return self.call(wrapper())

    def stop(self) -> None:
        """Close the server and its loop (once; later calls do nothing)."""
        if self.loop.is_closed():
            return

        async def close() -> None:
            self.handle.close()
            await self.handle.wait_closed()

        self.call(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def start_shim(upstream: FakeUpstream) -> Iterator[Callable[..., ShimServer]]:
    """Start a shim DNS server: ``start_shim(matcher, **settings)``; stopped after the test."""
    servers: list[ShimServer] = []

    def start(
        matcher: Matcher,
        *,
        ready: bool = True,
        events: list[NetworkEvent] | None = None,
        **settings: Any,
    ) -> ShimServer:
        settings.setdefault("upstreams", (("127.0.0.1", upstream.port),))
        frontend = DnsFrontEnd(
            matcher,
            DnsSettings(**settings),
            on_event=events.append if events is not None else None,
            ready=ready,
        )
        server = ShimServer(frontend)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
