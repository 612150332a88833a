"""Wakes long-polling devices when the store's revision changes.

Revisions are made by another process (the daemon, the CLI), so the server cannot be told; it
polls. One task per server process reads `current_revision` a few times a second and wakes every
waiter at once by setting the current `asyncio.Event` and swapping in a fresh one: one query per
server rather than one per device, and no thread held by a waiting device.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from enforcer.pipeline.metrics import SYNC_WAITING
from enforcer.store.feed import current_revision

log = structlog.get_logger("enforcer.api")


class RevisionWatcher:
    """The last revision seen, and an event set when it moves."""

    def __init__(self, engine: Engine, interval: float = 0.25) -> None:
        self.engine = engine
        self.interval = interval
        self.revision = -1
        self._event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def ensure_started(self) -> None:
        """Start the polling task in the running loop, unless it runs already."""
        if self._task is None or self._task.done():
            self._event = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="revision-watch")

    async def stop(self) -> None:
        """Stop polling (at server shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_beyond(self, revision: int, timeout: float) -> bool:
        """Wait until a revision newer than `revision` is seen or `timeout` passes.

        Returns whether a newer revision was seen.
        """
        self.ensure_started()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        SYNC_WAITING.inc()
        try:
            while self.revision <= revision:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                event = self._event
                assert event is not None
                try:
                    await asyncio.wait_for(event.wait(), remaining)
                except TimeoutError:
                    return self.revision > revision
            return True
        finally:
            SYNC_WAITING.dec()

    async def _run(self) -> None:
        while True:
            try:
                revision = await run_in_threadpool(self._read)
            except SQLAlchemyError as exc:
                if not self._failing:
                    log.warning("revision_watch_failing", error=str(exc).splitlines()[0][:300])
                self._failing = True
            else:
                self._failing = False
                if revision != self.revision:
                    self.revision = revision
                    event, self._event = self._event, asyncio.Event()
                    if event is not None:
                        event.set()
            await asyncio.sleep(self.interval)

    def _read(self) -> int:
        with self.engine.connect() as conn:
            return current_revision(conn)
