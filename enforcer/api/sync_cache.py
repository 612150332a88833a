"""Rendered sync answers, shared by every device that asks the same question.

A snapshot of 100,000 indicators is about 17 MB of JSON. Rendered per device, each download
held a database connection for the whole transfer, and a herd of devices woken by one large
change exhausted the pool: answers cut short, no device updated. Here an answer is rendered once
per key (the store's epoch and revision, the device's scope set; for a delta also the device's
revision) by the first request that needs it, in one worker thread with one connection; every
device then gets the same bytes from memory or from a file, without a connection.

A body is kept gzip-compressed (a sixth to a tenth of the JSON): a client that accepts gzip
(the shim does: httpx asks for it) gets those bytes as they are, any other client gets them
inflated on the fly. Either way the answer declares its Content-Length, so a connection cut in
the middle is an error to the client, never a short 200 that looks complete.

Memory is bounded. A body larger than `spill_bytes` is written, while it renders, to an unlinked
temporary file in the cache directory (the space is freed when the last download reading it
ends, and at exit, even after a kill -9); the cache drops its least recently used entries when
the bodies in memory pass `memory_bytes` or those in files pass `disk_bytes`. A disk that
refuses the file costs memory, not the answer: the body is rendered again in memory and the
failure logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable, Iterable
from pathlib import Path
from typing import IO, Any

import anyio.to_thread
import structlog
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from enforcer.pipeline.metrics import SYNC_CACHE_BYTES, SYNC_RENDERS

log = structlog.get_logger("enforcer.api")

SEND_CHUNK = 64 * 1024
"""Bytes handed to the server per write: the server waits for each to drain before the next,
so a thousand downloads hold about this much each in user space, not a whole body."""
READ_CHUNK = 256 * 1024
"""Bytes read from a spilled body's file per worker-thread call."""
GZIP_LEVEL = 6


class Blob:
    """One rendered answer body, gzip-compressed, in memory or in an unlinked file."""

    __slots__ = ("_data", "_file", "identity_size", "size")

    def __init__(self, size: int, identity_size: int, data: bytes | None, file: IO[bytes] | None):
        self.size = size
        """Bytes of the compressed body (the Content-Length of a gzip answer)."""
        self.identity_size = identity_size
        """Bytes of the JSON itself (the Content-Length of an uncompressed answer)."""
        self._data = data
        self._file = file

    @property
    def memory(self) -> int:
        """Bytes this body holds in memory."""
        return self.size if self._data is not None else 0

    @property
    def disk(self) -> int:
        """Bytes this body holds in its file."""
        return self.size if self._file is not None else 0

    def gzip_bytes(self) -> bytes | None:
        """The whole compressed body when it is in memory (small answers go out in one write)."""
        return self._data

    async def gzip_chunks(self) -> AsyncIterator[bytes | memoryview]:
        """The compressed body in pieces of at most `SEND_CHUNK` bytes."""
        if self._data is not None:
            view = memoryview(self._data)
            for start in range(0, self.size, SEND_CHUNK):
                yield view[start : start + SEND_CHUNK]
            return
        assert self._file is not None
        fd = self._file.fileno()
        offset = 0
        while offset < self.size:
            # The file object stays open while this generator (and so the blob) is alive,
            # even after the cache dropped the entry.
            piece = await anyio.to_thread.run_sync(os.pread, fd, READ_CHUNK, offset)
            if not piece:
                raise OSError(f"sync cache file ended at {offset} of {self.size} bytes")
            offset += len(piece)
            view = memoryview(piece)
            for start in range(0, len(piece), SEND_CHUNK):
                yield view[start : start + SEND_CHUNK]

    async def identity_chunks(self) -> AsyncIterator[bytes]:
        """The JSON body, inflated piece by piece (for a client that does not take gzip)."""
        inflater = zlib.decompressobj(wbits=31)
        async for piece in self.gzip_chunks():
            data = bytes(piece)
            while data:
                out = inflater.decompress(data, SEND_CHUNK)
                data = inflater.unconsumed_tail
                if out:
                    yield out
        rest = inflater.flush()
        if rest:
            yield rest


class _SpillFailed(Exception):
    """Writing a body's file failed part-way: render it again, in memory."""


def render(chunks: Iterable[bytes], *, spill_bytes: int, directory: Path | None) -> Blob:
    """Compress `chunks` into a `Blob`: in memory, or in a file in `directory` once the
    compressed body passes `spill_bytes` (never a file when `directory` is None)."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    parts: list[bytes] = []
    held = 0
    identity = 0
    file: IO[bytes] | None = None
    try:
        for chunk in chunks:
            identity += len(chunk)
            out = compressor.compress(chunk)
            if not out:
                continue
            held += len(out)
            if file is not None:
                _write(file, out)
                continue
            parts.append(out)
            if directory is not None and held > spill_bytes:
                file = _open_spill(directory)
                if file is None:
                    directory = None  # logged: keep this body in memory
                else:
                    _write(file, b"".join(parts))
                    parts.clear()
        tail = compressor.flush()
        held += len(tail)
        if file is None:
            parts.append(tail)
            return Blob(held, identity, b"".join(parts), None)
        _write(file, tail)
        return Blob(held, identity, None, file)
    except BaseException:
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()
        raise


def _open_spill(directory: Path) -> IO[bytes] | None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Unlinked at once (O_TMPFILE where the kernel has it): nothing is left behind.
        # Unbuffered: a write that fails fails here, not later at close.
        return tempfile.TemporaryFile(dir=directory, prefix="sync-", buffering=0)
    except OSError as exc:
        log.warning("sync_cache_spill_failed", directory=str(directory), error=str(exc))
        return None


def _write(file: IO[bytes], data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[file.write(view) :]
    except OSError as exc:
        log.warning("sync_cache_spill_failed", error=str(exc))
        raise _SpillFailed from exc


def render_safely(
    source: Callable[[], Iterable[bytes]], *, spill_bytes: int, directory: Path | None
) -> Blob:
    """`render` of `source()`; when the spill file fails part-way, `source()` again in memory."""
    try:
        return render(source(), spill_bytes=spill_bytes, directory=directory)
    except _SpillFailed:
        return render(source(), spill_bytes=spill_bytes, directory=None)


def weight_of(value: object) -> tuple[int, int]:
    """(memory, disk) bytes of a cached value: the blobs it holds."""
    blob = value if isinstance(value, Blob) else getattr(value, "body", None)
    if isinstance(blob, Blob):
        return blob.memory, blob.disk
    return 0, 0


class RenderCache:
    """Values computed once per key in a worker thread, however many requests ask at once,
    and kept, least recently used dropped first, within a memory and a disk budget.

    Every entry is touched from the event loop only; the computations run in worker threads.
    A failed computation is not kept (the next request tries again).
    """

    def __init__(
        self,
        *,
        memory_bytes: int,
        disk_bytes: int,
        spill_bytes: int,
        directory: Path | None,
        max_entries: int = 4096,
    ) -> None:
        self.memory_bytes = memory_bytes
        self.disk_bytes = disk_bytes
        self.spill_bytes = spill_bytes
        self.directory = directory
        self.max_entries = max_entries
        self._done: OrderedDict[Hashable, Any] = OrderedDict()
        self._pending: dict[Hashable, asyncio.Future[Any]] = {}
        self.memory = 0
        self.disk = 0

    def blob(self, source: Callable[[], Iterable[bytes]], kind: str) -> Blob:
        """Render `source` with this cache's spill settings (call in a worker thread)."""
        SYNC_RENDERS.labels(kind).inc()
        return render_safely(source, spill_bytes=self.spill_bytes, directory=self.directory)

    async def get(self, key: Hashable, compute: Callable[..., Any], *args: Any) -> Any:
        """`compute(*args)` for `key`: kept, or shared with the request computing it now."""
        if key in self._done:
            self._done.move_to_end(key)
            return self._done[key]
        future = self._pending.get(key)
        if future is None:
            future = asyncio.ensure_future(run_in_threadpool(compute, *args))
            self._pending[key] = future
            future.add_done_callback(lambda done: self._settle(key, done))
        # A request that goes away does not cancel the work others wait for.
        return await asyncio.shield(future)

    def _settle(self, key: Hashable, future: asyncio.Future[Any]) -> None:
        self._pending.pop(key, None)
        if future.cancelled() or future.exception() is not None:
            return
        value = future.result()
        memory, disk = weight_of(value)
        self._done[key] = value
        self.memory += memory
        self.disk += disk
        while len(self._done) > 1 and (
            self.memory > self.memory_bytes
            or self.disk > self.disk_bytes
            or len(self._done) > self.max_entries
        ):
            _key, dropped = self._done.popitem(last=False)
            memory, disk = weight_of(dropped)
            self.memory -= memory
            self.disk -= disk
        SYNC_CACHE_BYTES.labels("memory").set(self.memory)
        SYNC_CACHE_BYTES.labels("disk").set(self.disk)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header accepts gzip (``gzip`` or ``*``, not at q=0)."""
    for part in (accept_encoding or "").split(","):
        name, _, params = part.partition(";")
        if name.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        q = params.strip().lower()
        if q.startswith("q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def blob_response(blob: Blob, accept_encoding: str | None, headers: dict[str, str]) -> Response:
    """`blob` as a JSON answer with its Content-Length: gzip-encoded if the client takes it."""
    headers = {**headers, "Vary": "Accept-Encoding"}
    media = "application/json"
    if accepts_gzip(accept_encoding):
        headers["Content-Encoding"] = "gzip"
        whole = blob.gzip_bytes()
        if whole is not None and blob.size <= SEND_CHUNK:
            return Response(whole, media_type=media, headers=headers)
        headers["Content-Length"] = str(blob.size)
        return StreamingResponse(blob.gzip_chunks(), media_type=media, headers=headers)
    headers["Content-Length"] = str(blob.identity_size)
    return StreamingResponse(blob.identity_chunks(), media_type=media, headers=headers)
