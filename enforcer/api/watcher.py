"""Wakes long-polling devices when the store's revision or its epoch changes.

Revisions are made by another process (the daemon, the CLI), so the server cannot be told; it
polls. One task per server process reads `current_revision` a few times a second and wakes every
waiter at once by setting the current `asyncio.Event` and swapping in a fresh one: one query per
server rather than one per device, and no thread held by a waiting device.

The watcher follows (revision, epoch), not just the number: a store restored from a backup goes
back to an older revision, or reaches a number a device holds with other changes, and a device
waiting at that number must be woken (it then gets a snapshot), not kept waiting for a number
it already has.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from enforcer.pipeline.metrics import SYNC_WAITING
from enforcer.store.feed import current_epoch

log = structlog.get_logger("enforcer.api")


class RevisionWatcher:
    """The last revision and epoch seen, and an event set when either moves."""

    def __init__(self, engine: Engine, interval: float = 0.25) -> None:
        self.engine = engine
        self.interval = interval
        self.revision = -1
        self.epoch: str | None = None
        self._event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._released = False

    def ensure_started(self) -> None:
        """Start the polling task in the running loop, unless it runs already."""
        if self._task is None or self._task.done():
            self._event = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="revision-watch")

    def release(self) -> None:
        """End every long-poll now and any later one at once (the server is stopping): each
        answers "unchanged" (304) and the device asks again, of the next server."""
        self._released = True
        if self._event is not None:
            self._event.set()

    async def stop(self) -> None:
        """Stop polling (at server shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def current(self) -> tuple[int, str | None]:
        """The (revision, epoch) last seen; (-1, None) before the first read."""
        return self.revision, self.epoch

    @property
    def trusted(self) -> tuple[int, str | None]:
        """`current` while the last read of the store succeeded, else (-1, None): a watcher
        that cannot read the store does not know how far it has moved."""
        return (-1, None) if self._failing else self.current

    async def wait_for_change(self, revision: int, epoch: str | None, timeout: float) -> bool:
        """Wait until the store is seen at another state than a device's `revision` of `epoch`
        (any epoch when None), or `timeout` passes. Returns whether it was seen.

        A watcher not yet at the device's state may just lag (another process made the
        revision a moment ago) or may have missed it (the store was restored before the next
        poll): it gets two poll intervals to reach that state, after which the wait ends and
        the caller reads the store itself.
        """
        self.ensure_started()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        catch_up = loop.time() + 2 * self.interval
        seen = False
        SYNC_WAITING.inc()
        try:
            while True:
                if self._released:
                    return False
                if not self._differs(revision, epoch):
                    seen = True
                elif self.revision >= 0 and (
                    seen or self.revision > revision or loop.time() >= catch_up
                ):
                    return True
                now = loop.time()
                until = deadline if seen or now >= catch_up else min(deadline, catch_up)
                remaining = until - now
                if remaining <= 0:
                    return False
                event = self._event
                assert event is not None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), max(remaining, 0))
        finally:
            SYNC_WAITING.dec()

    def _differs(self, revision: int, epoch: str | None) -> bool:
        return self.revision != revision or (epoch is not None and self.epoch != epoch)

    async def _run(self) -> None:
        while True:
            try:
                state = await run_in_threadpool(self._read)
            except SQLAlchemyError as exc:
                if not self._failing:
                    log.warning("revision_watch_failing", error=str(exc).splitlines()[0][:300])
                self._failing = True
            else:
                self._failing = False
                if state != self.current:
                    self.revision, self.epoch = state
                    event, self._event = self._event, asyncio.Event()
                    if event is not None:
                        event.set()
            await asyncio.sleep(self.interval)

    def _read(self) -> tuple[int, str]:
        with self.engine.connect() as conn:
            return current_epoch(conn)
