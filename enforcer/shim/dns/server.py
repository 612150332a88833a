"""The DNS front end's sockets: a UDP and a TCP listener on one address, serving a `DnsFrontEnd`.

UDP datagrams are read straight from the socket, up to 64 per wake-up of the event loop (that
amortises the loop's overhead under load), and answered with ``sendto``; when the front end's
event sink takes batches (``event_batch``, the reporter), the answers of one wake-up are sent
together after their events were journaled with one write
(`enforcer.shim.verdict.EventBatch`). A query that needs an upstream answer is answered
later, when `DnsFrontEnd.forward` calls back. TCP connections carry
length-prefixed queries (RFC 7766) until idle for 10 s; while one is open, the front end's
``tcp_clients`` maps its client to the address it connected to (its socket's other end, which
finds the client's process). `run_dns` starts both and returns a
`DnsServerHandle`; `serve` runs them until cancelled (the ``enforcer shim`` command's DNS task).

On an address beyond loopback the listeners answer only the clients of their
`enforcer.shim.clients.ClientFilter` (loopback and the private networks unless told otherwise);
any other client gets REFUSED with its question and nothing else (never more bytes than it
sent, so a spoofed query cannot be amplified), and costs no parsing beyond its question.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from collections.abc import Sequence
from typing import Any

import structlog

from enforcer.shim import clients as client_filter
from enforcer.shim.clients import ClientFilter
from enforcer.shim.dns import upstream
from enforcer.shim.dns import wire as dnswire
from enforcer.shim.dns.answer import DnsFrontEnd
from enforcer.shim.intercept.origdst import original_destination

log = structlog.get_logger(__name__)

_TCP_IDLE = 10.0
_UDP_MAX_QUERY = 4096
"""Largest UDP query read; longer datagrams are cut, fail to parse and count as malformed."""
_UDP_BATCH = 64
"""Datagrams read per wake-up of the event loop: amortises the loop's overhead under load."""


def refused(data: bytes) -> bytes | None:
    """REFUSED for a client the listener does not serve: the query's header and question, no
    OPT (so never larger than the query); None for what is not a query with one question."""
    if len(data) < dnswire.HEADER_LEN or data[2] & 0x80 or data[4:6] != b"\x00\x01":
        return None
    try:
        qend = dnswire.skip_name(data, dnswire.HEADER_LEN) + 4
    except ValueError:
        return None
    if qend > len(data):
        return None
    flags = bytes((0x80 | (data[2] & 0x79), 0x80 | dnswire.RCODE_REFUSED))
    return data[:2] + flags + b"\x00\x01" + bytes(6) + data[dnswire.HEADER_LEN : qend]


class _UdpListener:
    """Reads datagrams straight from the socket, many per event-loop wake-up."""

    def __init__(
        self, frontend: DnsFrontEnd, sock: socket.socket, clients: ClientFilter | None
    ) -> None:
        self._frontend = frontend
        self._sock = sock
        self._clients = clients
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        batch = self._frontend.event_batch
        if batch is None:
            self._answer_pass(None)
            return
        # The answers of this pass wait in `ready` until their events are journaled at once.
        ready: list[tuple[bytes, Any]] = []
        batch.hold()
        try:
            self._answer_pass(ready)
        finally:
            batch.commit()
            sendto = self._sock.sendto
            for response, addr in ready:
                try:  # noqa: SIM105 (contextlib.suppress costs a Python call per answer)
                    sendto(response, addr)
                except OSError:
                    pass

    def _answer_pass(self, ready: list[tuple[bytes, Any]] | None) -> None:
        """Answer up to `_UDP_BATCH` datagrams: sent at once, or appended to `ready`."""
        recvfrom = self._sock.recvfrom
        sendto = self._sock.sendto
        answer = self._frontend.answer
        allows = self._clients.allows if self._clients is not None else None
        for _ in range(_UDP_BATCH):
            try:
                data, addr = recvfrom(_UDP_MAX_QUERY)
            except OSError:  # BlockingIOError: drained; anything else: try again on next wake-up
                return
            if allows is not None and not allows(addr[0]):
                denial = refused(data)
                if denial is not None:
                    with contextlib.suppress(OSError):
                        sendto(denial, addr)
                continue
            response = answer(data, addr, False)
            if response is None:
                continue
            if isinstance(response, bytes):
                if ready is not None:
                    ready.append((response, addr))
                    continue
                try:  # noqa: SIM105 (contextlib.suppress costs a Python call per answer)
                    sendto(response, addr)
                except OSError:
                    pass
            else:
                self._frontend.forward(response, _UdpReply(self._sock, addr))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._sock.close()


class _UdpReply:
    """Sends a late (forwarded) answer to one UDP client."""

    __slots__ = ("_addr", "_sock")

    def __init__(self, sock: socket.socket, addr: Any) -> None:
        self._sock = sock
        self._addr = addr

    def __call__(self, response: bytes) -> None:
        if self._sock.fileno() >= 0:
            self._sock.sendto(response, self._addr)


async def _serve_tcp_client(
    frontend: DnsFrontEnd,
    connections: set[asyncio.StreamWriter],
    clients: ClientFilter | None,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """Answer length-prefixed queries on one connection until it is idle or closed (RFC 7766)."""
    peer = writer.get_extra_info("peername")
    client = (peer[0], peer[1]) if isinstance(peer, tuple) else None
    if clients is not None and (client is None or not clients.allows(client[0])):
        await _refuse_tcp(reader, writer)
        return
    if client is not None:
        frontend.tcp_clients[client] = _connected_to(writer)
    connections.add(writer)

    def send(response: bytes) -> None:
        if not writer.is_closing():
            writer.write(len(response).to_bytes(2, "big") + response)

    try:
        while True:
            async with asyncio.timeout(_TCP_IDLE):
                length = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(length)
            response = frontend.answer(data, peer, True)
            if response is None:
                continue
            if isinstance(response, bytes):
                send(response)
                await writer.drain()
            else:
                frontend.forward(response, send)
    except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
        pass
    finally:
        if client is not None:
            frontend.tcp_clients.pop(client, None)
        connections.discard(writer)
        writer.close()


async def _refuse_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer a client the listener does not serve: REFUSED to its first query, then close."""
    with contextlib.suppress(asyncio.IncompleteReadError, TimeoutError, ConnectionError):
        async with asyncio.timeout(_TCP_IDLE):
            length = int.from_bytes(await reader.readexactly(2), "big")
            response = refused(await reader.readexactly(length))
        if response is not None:
            writer.write(len(response).to_bytes(2, "big") + response)
            await writer.drain()
    writer.close()


def _connected_to(writer: asyncio.StreamWriter) -> tuple[str, int]:
    """The address a TCP client connected to: the resolver it asked, when interception diverted
    the connection here, else this listener."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            return original_destination(sock)
    name = writer.get_extra_info("sockname")
    return (name[0], name[1]) if isinstance(name, tuple) else ("", 0)


class DnsServerHandle:
    """A running DNS server (UDP and TCP listeners); `close` stops it."""

    def __init__(
        self,
        frontend: DnsFrontEnd,
        udp: _UdpListener,
        tcp: asyncio.Server,
        connections: set[asyncio.StreamWriter],
        address: tuple[str, int],
    ) -> None:
        self.frontend = frontend
        self.address = address
        """The (host, port) actually bound: useful when the port asked for was 0."""
        self._udp = udp
        self._tcp = tcp
        self._connections = connections

    def close(self) -> None:
        """Stop listening and close open TCP connections (answers in flight are dropped)."""
        self._udp.close()
        self._tcp.close()
        for writer in list(self._connections):
            writer.close()

    async def wait_closed(self) -> None:
        """Wait until the listeners and the upstream exchanges are gone."""
        await self._tcp.wait_closed()
        await self.frontend.aclose()

    async def __aenter__(self) -> DnsServerHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same port (with port 0, a free one for both)."""
    family = upstream.family(host)
    for _ in range(20):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(OSError):
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            udp.bind((host, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            if port:
                raise
            continue
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    raise OSError(f"no free port for UDP and TCP on {host}")


async def run_dns(
    frontend: DnsFrontEnd,
    host: str | None = None,
    port: int | None = None,
    *,
    allow_clients: Sequence[str] | None = None,
) -> DnsServerHandle:
    """Start answering on ``host:port`` (default: the settings'), UDP and TCP; returns at once.

    `allow_clients`: the networks served besides loopback when the address is not a loopback
    one (None: the private networks; see `enforcer.shim.clients`); ValueError if one is not
    a network.
    """
    settings = frontend.settings
    host = settings.listen_host if host is None else host
    port = settings.listen_port if port is None else port
    udp_sock, tcp_sock = _bind_pair(host, port)
    address = udp_sock.getsockname()[:2]
    try:
        clients = client_filter.for_listener("dns", host, address[1], allow_clients)
    except ValueError:
        udp_sock.close()
        tcp_sock.close()
        raise
    udp = _UdpListener(frontend, udp_sock, clients)
    connections: set[asyncio.StreamWriter] = set()
    tcp = await asyncio.start_server(
        functools.partial(_serve_tcp_client, frontend, connections, clients),
        sock=tcp_sock,
        backlog=128,
    )
    log.info(
        "dns.listening",
        address=f"{address[0]}:{address[1]}",
        upstreams=[f"{h}:{p}" for h, p in settings.upstreams],
        blocked_ttl=settings.blocked_ttl,
        max_ttl=settings.max_ttl,
        sinkhole=settings.sinkhole,
        fail_closed=settings.fail_closed,
        indicators=len(frontend.matcher),
    )
    if not settings.upstreams:
        log.warning("dns.no_upstreams", detail="names that are not blocked get SERVFAIL")
    if not frontend.ready:
        if settings.fail_closed:
            log.warning("dns.fail_closed", detail="no indicator set yet: refusing every query")
        else:
            log.error(
                "dns.fail_open",
                detail="no indicator set yet: answering every query, nothing is blocked",
            )
    return DnsServerHandle(frontend, udp, tcp, connections, (address[0], address[1]))


async def serve(frontend: DnsFrontEnd, host: str | None = None, port: int | None = None) -> None:
    """Run the DNS server until cancelled (the ``enforcer shim`` command's DNS task)."""
    handle = await run_dns(frontend, host, port)
    try:
        await asyncio.Event().wait()
    finally:
        handle.close()
        await handle.wait_closed()
