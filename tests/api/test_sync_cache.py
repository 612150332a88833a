"""The cache of rendered sync answers: one rendering per key, bounded memory, spill files,
and a disk that refuses them (issue 14.5)."""

from __future__ import annotations

import asyncio
import gzip
import os
import resource
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from enforcer.api import ApiLimits, create_app
from enforcer.api.sync_cache import Blob, RenderCache, accepts_gzip, render_safely
from tests.api.conftest import bearer, enroll_body, running, settings
from tests.api.helpers import apply_indicators, block
from tests.api.test_sync import SYNC

# Varied enough that gzip does not shrink it to nothing: a few hundred KB compressed.
BODY = b"".join(
    b'{"indicatorValue":"%s.example","scope":""},' % os.urandom(12).hex().encode()
    for _ in range(20_000)
)


def pieces(size: int = 10_000) -> Iterator[bytes]:
    for start in range(0, len(BODY), size):
        yield BODY[start : start + size]


async def collect(blob: Blob) -> tuple[bytes, bytes]:
    compressed = b"".join([bytes(p) async for p in blob.gzip_chunks()])
    plain = b"".join([p async for p in blob.identity_chunks()])
    return compressed, plain


def check(blob: Blob) -> None:
    compressed, plain = asyncio.run(collect(blob))
    assert len(compressed) == blob.size and gzip.decompress(compressed) == BODY
    assert plain == BODY and blob.identity_size == len(BODY)


def test_a_small_answer_stays_in_memory(tmp_path: Path) -> None:
    blob = render_safely(pieces, spill_bytes=len(BODY), directory=tmp_path)
    assert blob.memory == blob.size and blob.disk == 0
    check(blob)


def test_a_large_answer_is_spilled_to_an_unlinked_file(tmp_path: Path) -> None:
    blob = render_safely(pieces, spill_bytes=50_000, directory=tmp_path / "sync")
    assert blob.disk == blob.size > 50_000 and blob.memory == 0
    assert list((tmp_path / "sync").iterdir()) == []  # nothing left behind, even by a kill -9
    check(blob)


def test_a_spill_directory_that_cannot_be_made_keeps_the_answer_in_memory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    blob = render_safely(pieces, spill_bytes=50_000, directory=tmp_path / "file" / "sync")
    assert blob.memory == blob.size and blob.disk == 0
    check(blob)


def test_a_disk_that_fills_during_the_spill_renders_again_in_memory(tmp_path: Path) -> None:
    # A real short write: the process may not write files past 120 KB (EFBIG).
    calls = []

    def source() -> Iterator[bytes]:
        calls.append(1)
        return pieces()

    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (120_000, hard))
    try:
        blob = render_safely(source, spill_bytes=50_000, directory=tmp_path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert blob.size > 120_000, "the body must be larger than the file limit"
    assert len(calls) == 2 and blob.memory == blob.size
    check(blob)


def test_one_rendering_per_key_however_many_ask_at_once() -> None:
    cache = RenderCache(memory_bytes=10**9, disk_bytes=0, spill_bytes=10**9, directory=None)
    started = []
    gate = threading.Event()

    def compute() -> Blob:
        started.append(1)
        gate.wait(5)
        return cache.blob(pieces, "snapshot")

    async def many() -> list[Blob]:
        asks = [asyncio.ensure_future(cache.get("k", compute)) for _ in range(50)]
        await asyncio.sleep(0.2)
        gate.set()
        return await asyncio.gather(*asks)

    blobs = asyncio.run(many())
    assert len(started) == 1 and all(b is blobs[0] for b in blobs)


def test_the_least_recently_used_answers_go_beyond_the_memory_budget() -> None:
    one = render_safely(pieces, spill_bytes=10**9, directory=None)
    cache = RenderCache(
        memory_bytes=int(one.size * 2.5), disk_bytes=0, spill_bytes=10**9, directory=None
    )
    computed: list[str] = []

    def compute(key: str) -> Blob:
        computed.append(key)
        return cache.blob(pieces, "snapshot")

    async def ask(*keys: str) -> None:
        for key in keys:
            await cache.get(key, compute, key)

    asyncio.run(ask("a", "b", "a", "c", "a", "b"))
    # "b" was the least recently used when "c" came in: dropped, rendered again.
    assert computed == ["a", "b", "c", "b"]
    assert cache.memory <= int(one.size * 2.5)


@pytest.mark.parametrize(
    ("header", "gzip_ok"),
    [
        ("gzip, deflate", True),
        ("br;q=1.0, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("identity", False),
        ("*", True),
        (None, False),
        ("", False),
    ],
)
def test_accept_encoding(header: str | None, gzip_ok: bool) -> None:
    assert accepts_gzip(header) is gzip_ok


def test_an_answer_cut_short_is_an_error_to_the_client_never_a_short_200(
    engine: Engine, tmp_path: Path
) -> None:
    # A snapshot rendered into a spill file, which then loses its end under the server (a
    # failing disk): the next device gets the declared length, then a cut connection.
    apply_indicators(engine, [block(f"host{i:05d}.example") for i in range(5_000)])
    config = settings().model_copy(
        update={"sync_spill_bytes": 1_000, "sync_cache_dir": tmp_path / "sync"}
    )
    app = create_app(config, engine, ApiLimits(poll_interval=0.1))
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        tokens = [
            client.post("/api/v1/enroll", json=enroll_body(f"dev-{n}")).json()["deviceToken"]
            for n in range(2)
        ]
        first = client.get(SYNC, headers=bearer(tokens[0]))
        assert first.status_code == 200 and len(first.json()["upserts"]) == 5_000
        (blob,) = (v for k, v in app.state.ctx.answers.cache._done.items() if k[0] == "snapshot")
        assert blob.disk > 1_000
        os.ftruncate(blob._file.fileno(), blob.size // 2)
        # (The server logs the error with its traceback before it closes the connection: the
        # console renderer of the test log takes its time.)
        with pytest.raises(httpx.RemoteProtocolError, match=r"incomplete|complete message body"):
            client.get(SYNC, headers=bearer(tokens[1]), timeout=180)
