"""Relaying allowed diverted connections: two non-blocking sockets driven by the event loop's
readiness callbacks, without transports, protocols, streams or tasks.

An allowed diverted connection is a byte pipe between the client's socket and a marked socket
to its original destination. asyncio's transports cost several callbacks, futures and a task
per connection (accepting, connecting), and streams add a buffer copy and a task per
direction; at thousands of set-ups a second that Python is most of the shim's CPU. Here each
direction is a `Flow` registered with ``loop.add_reader`` on its source socket:

* a readable source is read into one shared buffer (``recv_into``, no allocation) and sent at
  once to the other socket; only what the other socket does not take is copied, kept as the
  flow's backlog, and then the flow stops reading its source and waits for the other socket
  to be writable (``add_writer``): back-pressure is the kernel's socket buffers;
* the end of a source (``recv`` returns nothing) is passed on as a half-close
  (``shutdown(SHUT_WR)``) once the backlog is sent, so a client that ends its upload first
  still gets its answer; the pipe ends when both directions ended, or at the first error
  (a reset), and then both sockets are closed and the byte counts reported once;
* idleness is not a timer per pipe: `Pipes.sweep` runs once a second over all of them and
  ends those where no byte moved for the idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

OnClose = Callable[[int, int], None]
"""Called once when a pipe ends, with the bytes sent up (client to origin) and down."""

CHUNK = 256 * 1024
"""Bytes read at a time (one buffer for every pipe of the loop)."""
_BUFFER = bytearray(CHUNK)
_VIEW = memoryview(_BUFFER)
_AGAIN = (BlockingIOError, InterruptedError)


class Flow:
    """One direction of a pipe: from `src` to `dst`."""

    __slots__ = ("backlog", "dst", "dst_fd", "ended", "n", "pipe", "src", "src_fd")

    def __init__(self, pipe: Pipe, src: socket.socket, dst: socket.socket) -> None:
        self.pipe = pipe
        self.src, self.dst = src, dst
        self.src_fd, self.dst_fd = src.fileno(), dst.fileno()
        self.backlog = b""
        """Bytes read from `src` that `dst` did not take yet."""
        self.n = 0
        """Bytes read from `src`."""
        self.ended = False
        """`src` has no more to send."""

    def send(self, data: bytes | memoryview) -> None:
        """Send `data` on; what is not taken now waits, and reading `src` pauses meanwhile."""
        try:
            sent = self.dst.send(data)
        except _AGAIN:
            sent = 0
        except OSError:
            self.pipe.end()
            return
        if sent < len(data):
            self.backlog = bytes(data[sent:])
            loop = self.pipe.loop
            if not self.ended:
                loop.remove_reader(self.src_fd)
            loop.add_writer(self.dst_fd, self.on_writable)

    def on_readable(self) -> None:
        try:
            size = self.src.recv_into(_BUFFER)
        except _AGAIN:
            return
        except OSError:
            self.pipe.end()
            return
        if size:
            self.n += size
            self.send(_VIEW[:size])
            return
        self.ended = True
        self.pipe.loop.remove_reader(self.src_fd)
        if not self.backlog:
            self.pipe.passed_on(self)

    def on_writable(self) -> None:
        try:
            sent = self.dst.send(self.backlog)
        except _AGAIN:
            return
        except OSError:
            self.pipe.end()
            return
        self.backlog = self.backlog[sent:]
        if self.backlog:
            return
        loop = self.pipe.loop
        loop.remove_writer(self.dst_fd)
        if self.ended:
            self.pipe.passed_on(self)
        else:
            loop.add_reader(self.src_fd, self.on_readable)


class Pipe:
    """A connected client socket and origin socket relayed both ways; see the module's text."""

    __slots__ = (
        "client",
        "done",
        "down",
        "loop",
        "on_close",
        "origin",
        "quiet_since",
        "seen",
        "up",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: socket.socket,
        origin: socket.socket,
        on_close: OnClose,
    ) -> None:
        self.loop = loop
        self.client, self.origin = client, origin
        self.up = Flow(self, client, origin)
        self.down = Flow(self, origin, client)
        self.on_close = on_close
        self.done = False
        self.seen = -1
        self.quiet_since = 0.0

    def start(
        self, first: bytes, *, sent: int = 0, client_ended: bool = False, reading: bool = False
    ) -> None:
        """Relay both ways, beginning with the client's first bytes (read and decided already),
        of which the origin took `sent` already; `client_ended`: the client has half-closed
        its side already; `reading`: the client socket's reader is registered already and
        passes readiness on to ``self.up.on_readable``."""
        loop = self.loop
        loop.add_reader(self.down.src_fd, self.down.on_readable)
        up = self.up
        up.ended = client_ended
        if client_ended:
            loop.remove_reader(up.src_fd)
        elif not reading:
            loop.add_reader(up.src_fd, up.on_readable)
        up.n += len(first)
        if sent < len(first):
            up.send(first[sent:] if sent else first)
        if client_ended and not up.backlog and not self.done:
            self.passed_on(up)

    def passed_on(self, flow: Flow) -> None:
        """`flow` ended and everything it read was sent: half-close its destination, or end
        the pipe if the other direction ended too (closing sends the end of both)."""
        other = self.down if flow is self.up else self.up
        if other.ended and not other.backlog:
            self.end()
            return
        with contextlib.suppress(OSError):
            flow.dst.shutdown(socket.SHUT_WR)

    @property
    def moved(self) -> int:
        """Bytes moved so far, both directions."""
        return self.up.n + self.down.n

    def end(self) -> None:
        """Stop relaying, close both sockets and report the byte counts (once)."""
        if self.done:
            return
        self.done = True
        loop = self.loop
        for flow in (self.up, self.down):
            if not flow.ended:
                loop.remove_reader(flow.src_fd)
            if flow.backlog:
                loop.remove_writer(flow.dst_fd)
        self.client.close()
        self.origin.close()
        on_close, self.on_close = self.on_close, _ended
        on_close(self.up.n, self.down.n)
        # Each pipe is a cycle (its flows point back at it, and its `on_close` is usually a
        # closure that holds it): broken here, the pipe is freed at once by its reference
        # count instead of by the cyclic collector, whose passes over a busy listener's
        # thousands of dead pipes were the shim's longest pauses (1-4 ms each).
        del self.up.pipe, self.down.pipe


def _ended(up: int, down: int) -> None:
    """A pipe's `on_close` once it has been called."""


class Pipes:
    """The live pipes of one listener, with the sweep that ends idle ones."""

    def __init__(self, loop: asyncio.AbstractEventLoop, idle_timeout: float) -> None:
        self.loop = loop
        self.idle_timeout = idle_timeout
        self.live: set[Pipe] = set()

    def add(self, pipe: Pipe) -> None:
        """Watch `pipe` for idleness until it ends."""
        pipe.quiet_since = self.loop.time()
        self.live.add(pipe)

    def sweep(self) -> int:
        """End the pipes where no byte moved for the idle timeout; returns how many."""
        now = self.loop.time()
        ended = 0
        for pipe in list(self.live):
            if pipe.done:
                self.live.discard(pipe)
                continue
            moved = pipe.moved
            if moved != pipe.seen:
                pipe.seen = moved
                pipe.quiet_since = now
            elif now - pipe.quiet_since >= self.idle_timeout:
                self.live.discard(pipe)
                pipe.end()
                ended += 1
        return ended

    def end_all(self) -> None:
        """End every live pipe (shutdown)."""
        for pipe in list(self.live):
            pipe.end()
        self.live.clear()
