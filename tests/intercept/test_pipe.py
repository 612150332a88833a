"""`enforcer.shim.intercept.pipe`: the protocol relay of allowed diverted connections.

Real sockets on 127.0.0.1 (no namespace needed): a client connects to a listener whose protocol
is the pipe's client side, the pipe's origin side connects to an origin server, and the tests
check what each end sees: bytes in order and in full, half-closes passed on in either order,
back-pressure, the idle timeout and the byte counts reported once.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
from collections.abc import Awaitable, Callable

import pytest

from enforcer.shim.intercept.pipe import Pipe, Pipes

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class _Setup:
    """A listener whose connections are piped to an origin served by a handler, with a sweep
    every 0.1 s for idle pipes."""

    def __init__(self) -> None:
        self.closed: list[tuple[int, int]] = []
        """The byte counts of the pipes that ended."""
        self.port = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._closers: list[Callable[[], object]] = []

    async def start(self, handler: Handler, idle: float = 30.0) -> int:
        origin = await asyncio.start_server(handler, "127.0.0.1", 0)
        origin_address = origin.sockets[0].getsockname()
        loop = asyncio.get_running_loop()
        pipes = Pipes(loop, idle)
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        self._closers += [origin.close, listener.close, pipes.end_all]

        async def accept() -> None:
            while True:
                client, _ = await loop.sock_accept(listener)
                client.setblocking(False)
                upstream = socket.socket()
                upstream.setblocking(False)
                await loop.sock_connect(upstream, origin_address)
                pipe = Pipe(loop, client, upstream, lambda up, down: self.closed.append((up, down)))
                pipes.add(pipe)
                pipe.start(b"first:")

        async def sweep() -> None:
            while True:
                await asyncio.sleep(0.1)
                pipes.sweep()

        self._tasks = [loop.create_task(accept()), loop.create_task(sweep())]
        self.port = listener.getsockname()[1]
        return self.port

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for close in self._closers:
            close()


async def _until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():
            await asyncio.sleep(0.01)


def test_bytes_pass_in_full_both_ways_and_the_client_half_close_gets_the_answer() -> None:
    payload = os.urandom(3 << 20)

    async def echo_at_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client's half-close arrives
        writer.write(data[::-1])
        await writer.drain()
        writer.close()

    async def main() -> None:
        setup = _Setup()
        closed = setup.closed
        port = await setup.start(echo_at_eof)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        answer = await reader.read()
        writer.close()
        sent = b"first:" + payload
        assert answer == sent[::-1]
        await _until(lambda: bool(closed))
        assert closed == [(len(sent), len(sent))]
        setup.stop()

    asyncio.run(main())


def test_an_origin_that_speaks_and_closes_first_still_reads_the_client() -> None:
    received: list[bytes] = []

    async def greet_then_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        writer.write_eof()  # done talking, still listening
        received.append(await reader.read())
        writer.close()

    async def main() -> None:
        setup = _Setup()
        closed = setup.closed
        port = await setup.start(greet_then_read)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.read() == b"hello"  # the origin's half-close reached the client
        writer.write(b"after the origin's EOF")
        writer.write_eof()
        await _until(lambda: bool(closed))
        assert received == [b"first:after the origin's EOF"]
        assert closed == [(len(received[0]), 5)]
        writer.close()
        setup.stop()

    asyncio.run(main())


def test_a_slow_reader_holds_the_sender_back_instead_of_filling_memory() -> None:
    release = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        total = 0
        while data := await reader.read(1 << 16):
            total += len(data)
        writer.write(str(total).encode())
        await writer.drain()
        writer.close()

    async def main() -> None:
        setup = _Setup()
        port = await setup.start(slow)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.set_write_buffer_limits(high=1 << 16)
        chunk = b"x" * (1 << 16)
        sent = 0
        # With the origin not reading, the client's writes must stall well before 64 MiB.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2.0):
                while sent < 64 << 20:
                    writer.write(chunk)
                    sent += len(chunk)
                    await writer.drain()
        assert sent < 64 << 20
        release.set()
        writer.write_eof()
        assert int(await reader.read()) == sent + len(b"first:")
        writer.close()
        setup.stop()

    asyncio.run(main())


def test_an_idle_pipe_is_closed_and_reported_once() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def main() -> None:
        setup = _Setup()
        closed = setup.closed
        port = await setup.start(silent, idle=0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # closed by the shim side after 0.2-0.4 s
        await asyncio.sleep(0.5)
        assert closed == [(len(b"first:"), 0)]
        writer.close()
        setup.stop()

    asyncio.run(main())


def test_a_client_reset_ends_the_pipe_and_closes_the_origin() -> None:
    origin_saw_eof = asyncio.Event()

    async def wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        origin_saw_eof.set()
        writer.close()

    async def main() -> None:
        setup = _Setup()
        closed = setup.closed
        port = await setup.start(wait)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"abc")
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.transport.abort()  # RST
        async with asyncio.timeout(5):
            await origin_saw_eof.wait()
        await _until(lambda: bool(closed))
        assert closed == [(len(b"first:abc"), 0)]
        setup.stop()

    asyncio.run(main())


def test_an_ended_pipe_leaves_no_cycle_for_the_collector() -> None:
    """An ended pipe (and the closure that reported it, which holds it) is freed by reference
    counts alone: on a busy listener the collector's passes over dead pipes were the shim's
    longest pauses."""

    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        client_end, client = socket.socketpair()
        origin_end, origin = socket.socketpair()
        for sock in (client, origin):
            sock.setblocking(False)
        reported: list[tuple[int, int]] = []

        def make() -> None:
            pipe: Pipe

            def closed(up: int, down: int) -> None:  # holds `pipe`, as the listener's does
                assert pipe.done
                reported.append((up, down))

            pipe = Pipe(loop, client, origin, closed)
            pipe.start(b"hello")
            pipe.end()

        gc.collect()
        gc.disable()
        try:
            make()
            found = gc.collect()  # unreachable objects that only the collector could free
        finally:
            gc.enable()
            client_end.close()
            origin_end.close()
        assert reported == [(5, 0)]
        return found

    assert asyncio.run(scenario()) == 0
