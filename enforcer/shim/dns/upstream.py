"""The DNS front end's upstream resolvers: one query asked of each in turn until one answers.

A query goes over UDP from a fresh socket (a random source port) with a random ID and a
timeout, and again over TCP when the UDP answer is truncated. The resolver that answered last is
asked first, so a dead first resolver costs one timeout, not one per query. An answer counts
only if it is a response to the query sent (same ID, QR set, same question).
"""

from __future__ import annotations

import asyncio
import secrets
import socket

from enforcer.shim.dns.wire import EDNS_DO, MIN_OPT
from enforcer.shim.intercept.mark import open_marked_connection, set_mark


class Upstreams:
    """Resolvers to forward to, (address, port) pairs, tried in order from the preferred one."""

    def __init__(
        self, resolvers: tuple[tuple[str, int], ...], timeout: float, mark: int = 0
    ) -> None:
        self.resolvers = resolvers
        self.timeout = timeout
        """Seconds to wait for one resolver before trying the next."""
        self.mark = mark
        """``SO_MARK`` of the sockets that ask (0: none): interception lets them through."""
        self._preferred = 0

    async def ask(self, question: bytes, edns: int) -> bytes | None:
        """The first well-formed answer to ``question`` (its wire bytes), or None.

        ``edns`` is the client's (`dnswire.parse_query`): its DO bit is passed on.
        """
        query_id = secrets.randbits(16)
        do_bit = 0x80 if edns & EDNS_DO else 0
        opt = MIN_OPT[:7] + bytes((do_bit,)) + MIN_OPT[8:]
        query = query_id.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01"
        query += question + opt
        resolvers = self.resolvers
        first = self._preferred
        for index in [*range(first, len(resolvers)), *range(first)]:
            host, port = resolvers[index]
            try:
                wire = await _udp_exchange(host, port, query, self.timeout, self.mark)
                if wire[2] & 0x02:
                    wire = await _tcp_exchange(host, port, query, self.timeout, self.mark)
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                continue
            if _answers(wire, query):
                self._preferred = index
                return wire
        return None


def _answers(wire: bytes, query: bytes) -> bool:
    """The upstream message is a response to ``query``: same ID, QR set, same question."""
    qend = len(query) - len(MIN_OPT)
    return (
        len(wire) >= qend
        and wire[:2] == query[:2]
        and bool(wire[2] & 0x80)
        and wire[4:6] == b"\x00\x01"
        and wire[12:qend].lower() == query[12:qend].lower()
    )


def family(host: str) -> socket.AddressFamily:
    """The address family of an IP literal."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


async def _udp_exchange(host: str, port: int, query: bytes, timeout: float, mark: int) -> bytes:
    """Send one query from a fresh socket (a random source port) and wait for its answer."""
    loop = asyncio.get_running_loop()
    with socket.socket(family(host), socket.SOCK_DGRAM) as sock:
        set_mark(sock, mark)
        sock.setblocking(False)
        sock.connect((host, port))
        await loop.sock_sendall(sock, query)
        async with asyncio.timeout(timeout):
            while True:
                wire = await loop.sock_recv(sock, 65535)
                if wire[:2] == query[:2]:
                    return wire


async def _tcp_exchange(host: str, port: int, query: bytes, timeout: float, mark: int) -> bytes:
    """One query over TCP (after a truncated UDP answer)."""
    async with asyncio.timeout(timeout):
        reader, writer = await open_marked_connection(host, port, mark)
        try:
            writer.write(len(query).to_bytes(2, "big") + query)
            length = int.from_bytes(await reader.readexactly(2), "big")
            return await reader.readexactly(length)
        finally:
            writer.close()
