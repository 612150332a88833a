"""Relaying an allowed diverted connection with asyncio protocols: no task, no stream per side.

A diverted connection that is allowed is a byte pipe between the client's socket and a marked
socket to its original destination. Streams (`asyncio.StreamReader` per side and a task per
direction, as `enforcer.shim.proxy.relay.Relay` does for the proxy) cost more Python per
connection than the rest of its set-up, and copy every chunk once more through the reader's
buffer. Here each side is a protocol whose ``data_received`` writes straight into the other
side's transport:

* flow control is the transports' own: a side whose write buffer passes its high-water mark
  pauses reading on the other side (``pause_writing``) until it drains (``resume_writing``);
* a half-close passes on (``eof_received`` -> ``write_eof``), so request/response protocols
  that end their upload first still get their answer; the pipe ends when both directions
  ended, or when one side is lost, and then closes both (a transport's ``close`` still sends
  what it buffered);
* idleness is checked once per idle period (one timer per pipe, not per chunk): a pipe where
  no byte moved for a whole period is closed;
* the byte counts are kept per side and handed to `Pipe.on_close` once, when the pipe ends.

`Pipe` owns the two sides: the client's (`ClientSide`, which the transparent listener's
protocol becomes once its connection is allowed) and the origin's (`OriginSide`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

OnClose = Callable[[int, int], None]
"""Called once when a pipe ends, with the bytes sent up (client to origin) and down."""


class Side(asyncio.Protocol):
    """One end of a pipe: what it receives goes out of the other end."""

    __slots__ = ("eof", "n", "peer", "pipe", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Side | None = None
        self.pipe: Pipe | None = None
        self.n = 0
        """Bytes received on this side (and written to the other)."""
        self.eof = False

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            return
        self.n += len(data)
        peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        pipe = self.pipe
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                if peer.transport.can_write_eof():
                    peer.transport.write_eof()
        if pipe is not None and peer is not None and peer.eof:
            pipe.end()
            return False
        return True  # keep the other direction open

    def pause_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.eof:
            peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pipe is not None:
            self.pipe.end()


class OriginSide(Side):
    """The pipe's end towards the original destination (made by ``loop.create_connection``)."""

    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport


class Pipe:
    """A client side and an origin side joined; see the module's description."""

    __slots__ = ("_idle", "_moved", "_timer", "client", "ended", "on_close", "origin")

    def __init__(self, client: Side, origin: Side, idle_timeout: float, on_close: OnClose) -> None:
        self.client, self.origin = client, origin
        client.peer, origin.peer = origin, client
        client.pipe = origin.pipe = self
        self.on_close = on_close
        self.ended = False
        self._idle = idle_timeout
        self._moved = -1
        self._timer: asyncio.TimerHandle | None = None

    def start(self, first: bytes) -> None:
        """Send the client's first bytes (already read and decided) on, then relay both ways.

        The client's transport must be paused (it was, while the origin was being reached)."""
        origin, client = self.origin.transport, self.client.transport
        assert origin is not None and client is not None
        if first:
            origin.write(first)
            self.client.n += len(first)
        if self.client.eof:
            with contextlib.suppress(OSError, RuntimeError):
                origin.write_eof()
        else:
            client.resume_reading()
        self._timer = asyncio.get_running_loop().call_later(self._idle, self._check_idle)

    def _check_idle(self) -> None:
        moved = self.client.n + self.origin.n
        if moved == self._moved:
            self.end(abort=True)  # what is still buffered has waited a whole period already
            return
        self._moved = moved
        self._timer = asyncio.get_running_loop().call_later(self._idle, self._check_idle)

    def end(self, *, abort: bool = False) -> None:
        """Close both sides (what they buffered is still sent, unless `abort`) and report the
        byte counts."""
        if self.ended:
            return
        self.ended = True
        if self._timer is not None:
            self._timer.cancel()
        for side in (self.client, self.origin):
            if side.transport is not None:
                if abort:
                    side.transport.abort()
                else:
                    side.transport.close()
        self.on_close(self.client.n, self.origin.n)
