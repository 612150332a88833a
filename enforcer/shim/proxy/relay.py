"""Moving bytes for the proxy: tunnels in both directions, byte counts, closing a client cleanly.

* `Relay` runs both directions of an allowed connection (a CONNECT tunnel, or a diverted
  connection) with their byte counts (`Meter`), the origin-to-client direction possibly started
  before the client's first bytes are checked (server-speaks-first protocols), and closes it when
  no byte moved in either direction for an idle period;
* `copy_to_eof` is one direction, `close_client` closes a client connection without losing the
  answer just written to it, `send_quietly` writes a last answer to a client that may be gone,
  `peer_ip` names the other end of a stream.
"""

from __future__ import annotations

import asyncio
import contextlib

CHUNK = 64 * 1024
"""Bytes read at a time."""
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 1 << 20


class Meter:
    """A byte count shared between a copying task and the code that reports it."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


async def copy_to_eof(src: asyncio.StreamReader, dst: asyncio.StreamWriter, meter: Meter) -> None:
    """Copy until `src` ends, counting the bytes in `meter`."""
    while data := await src.read(CHUNK):
        dst.write(data)
        meter.n += len(data)
        await dst.drain()


class Relay:
    """Both directions of a tunnel and their byte counts, closed when idle in both directions."""

    def __init__(
        self,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        idle_timeout: float,
    ) -> None:
        self.client_reader, self.client_writer = client_reader, client_writer
        self.up_reader, self.up_writer = up_reader, up_writer
        self.idle_timeout = idle_timeout
        self.up = Meter()
        self.down = Meter()
        self._down_task: asyncio.Task[None] | None = None

    def start_down(self) -> None:
        """Start relaying origin to client (before the client's first bytes are checked)."""
        if self._down_task is None:
            self._down_task = asyncio.create_task(
                _pump(self.up_reader, self.client_writer, self.down)
            )

    async def carry(self, first: bytes) -> None:
        """Send the client's first bytes (already read and checked) on, then relay the rest."""
        self.up_writer.write(first)
        self.up.n += len(first)
        await self.run(client_done=not first)

    async def run(self, *, client_done: bool) -> None:
        """Relay until both directions end, or until no byte moved for an idle period.

        Idleness is checked once per period (no timer per chunk on this hot path), so an idle
        tunnel closes after one to two idle timeouts.
        """
        self.start_down()
        assert self._down_task is not None
        pending: set[asyncio.Task[None]] = {self._down_task}
        if client_done:
            if self.up_writer.can_write_eof():
                self.up_writer.write_eof()
        else:
            pending.add(asyncio.create_task(_pump(self.client_reader, self.up_writer, self.up)))
        moved = -1
        while pending and moved != self.up.n + self.down.n:
            moved = self.up.n + self.down.n
            _, pending = await asyncio.wait(pending, timeout=self.idle_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def close(self) -> None:
        """Stop relaying and close the upstream connection (the client's is the caller's)."""
        if self._down_task is not None:
            self._down_task.cancel()
        self.up_writer.close()


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, meter: Meter) -> None:
    """One direction of a tunnel: copy to EOF, then pass the half-close on."""
    with contextlib.suppress(ConnectionError, OSError):
        await copy_to_eof(src, dst, meter)
        if dst.can_write_eof():
            dst.write_eof()


def peer_ip(writer: asyncio.StreamWriter) -> str:
    """The IP address at the other end of a connection ("" if it has none)."""
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) else ""


async def close_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close a client connection without losing the answer just written to it.

    Closing a socket with unread input makes the kernel send a reset, which can destroy the
    answer (a block page, a 400) before the client reads it. So: send FIN, then read and discard
    what the client still sends, for a bounded time and size, before closing.
    """
    with contextlib.suppress(Exception):
        if not writer.is_closing() and writer.can_write_eof():
            await writer.drain()
            writer.write_eof()
            async with asyncio.timeout(_LINGER_SECONDS):
                left = _LINGER_BYTES
                while left > 0 and (data := await reader.read(CHUNK)):
                    left -= len(data)
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


async def send_quietly(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Write a last answer to a client that may already be gone."""
    with contextlib.suppress(Exception):
        writer.write(data)
        await writer.drain()
