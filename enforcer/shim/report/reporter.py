"""The event reporter: front-end events, with device context, to the spool and on to the server.

The front ends call `Reporter.on_event` on the event loop for every answer or connection they
report, so it only appends the event to an in-memory list (no I/O, no formatting). A flusher
moves that list to the on-disk spool every ``flush_interval`` seconds, or as soon as
``flush_events`` are waiting, in a worker thread (one transaction per flush). A sender cuts
batches of up to 1,000 events from the spool and posts them to ``POST /api/v1/events``; a batch
leaves the spool only after the server's 200 (see `enforcer.shim.report.spool` for the batch-id rules
that make a re-send count once).

Device context: every event gets the device's hostname, its user (the front end's, else the
logged-in one) and its local IP here, so the front ends stay free of it.

Errors: a server that is down or answers 5xx/429 is retried with full-jitter backoff and nothing
is lost. A batch the server refuses as malformed (422) or oversized (413) can never succeed: it
is logged with its id and discarded so it does not block every later batch (``rejected``).

The spool's ``dropped`` counter (events lost to the spool bound) is reported with each batch in
the ``X-Enforcer-Dropped`` header and in the periodic ``reporter.stats`` log event.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import structlog

from enforcer.models import NetworkEvent
from enforcer.shim.report.identity import DeviceIdentity
from enforcer.shim.report.spool import Batch, Spool
from enforcer.shim.sync import Backoff, EnrolmentError, ServerError, ServerSession, retry_after
from enforcer.wire.events import EventsAccepted, event_json

log = structlog.get_logger(__name__)
_T = TypeVar("_T")

STATS_INTERVAL = 60.0
MAX_BUFFERED = 100_000
"""Events kept in memory while the spool cannot be written; older ones are dropped (``lost``)."""


def event_body(event: NetworkEvent, device: DeviceIdentity) -> dict[str, Any]:
    """The wire form of one event (``POST /api/v1/events``), with the device's context."""
    return event_json(event, hostname=device.hostname, user=device.user, local_ip=device.local_ip)


class Reporter:
    """Buffers, spools and sends network events; run `run` as a task, `aclose` at shutdown."""

    def __init__(
        self,
        spool: Spool,
        device: DeviceIdentity,
        session: ServerSession | None,
        *,
        flush_interval: float = 0.5,
        flush_events: int = 500,
        backoff: Backoff | None = None,
    ) -> None:
        self.spool = spool
        self.device = device
        self.session = session
        self.flush_interval = flush_interval
        self.flush_events = flush_events
        self.backoff = backoff or Backoff()
        self.sent = 0
        self.batches = 0
        self.rejected = 0
        self.errors = 0
        self.lost = 0
        """Events dropped because the spool could not be written and the memory buffer was full."""
        self._buffer: list[NetworkEvent] = []
        self._full = asyncio.Event()
        self._spooled = asyncio.Event()
        # One worker thread owns the spool: appends, cuts and acks never run concurrently.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")

    def on_event(self, event: NetworkEvent) -> None:
        """The front ends' ``on_event`` callback: O(1), never blocks."""
        self._buffer.append(event)
        if len(self._buffer) >= self.flush_events:
            self._full.set()

    async def _in_worker(self, func: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, func, *args)

    def _store(self, events: list[NetworkEvent]) -> int:
        return self.spool.append([event_body(e, self.device) for e in events])

    async def flush(self) -> int:
        """Move the buffered events to the spool; returns how many were moved."""
        events, self._buffer = self._buffer, []
        self._full.clear()
        if not events:
            return 0
        try:
            dropped = await self._in_worker(self._store, events)
        except (sqlite3.Error, OSError):
            # A full or failing disk: keep the events in memory (bounded) and try again later.
            log.exception("reporter.spool_write_failed", events=len(events))
            room = max(0, MAX_BUFFERED - len(self._buffer))
            kept = events[len(events) - room :] if room < len(events) else events
            self.lost += len(events) - len(kept)
            self._buffer[:0] = kept
            return 0
        if dropped:
            log.warning("reporter.spool_full", dropped=dropped, max_events=self.spool.max_events)
        self._spooled.set()
        return len(events)

    async def _flusher(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval):
                    await self._full.wait()
            await self.flush()

    async def send_one(self, batch: Batch) -> bool:
        """Post one batch; True when the server took it (or refused it for good)."""
        assert self.session is not None
        response = await self.session.request(
            "POST",
            "/events",
            json={"batchId": batch.batch_id, "events": batch.events},
            headers={"X-Enforcer-Dropped": str(self.spool.dropped)},
            timeout=30,
        )
        status = response.status_code
        if status == 200:
            # Only the API's own acknowledgement of this batch lets it go: a maintenance page,
            # a captive portal or a wrong --server answering 200 is an outage, not a delivery.
            if not _acknowledges(response, batch.batch_id):
                raise ServerError(
                    f"events answered 200 without accepting batch {batch.batch_id}: "
                    f"{response.text[:200]!r}"
                )
            await self._in_worker(self.spool.ack, batch.batch_id)
            self.sent += len(batch.events)
            self.batches += 1
            return True
        if status in (413, 422):
            log.error(
                "reporter.batch_rejected",
                batch_id=batch.batch_id,
                status=status,
                events=len(batch.events),
                detail=response.text[:500],
            )
            await self._in_worker(self.spool.ack, batch.batch_id)
            self.rejected += len(batch.events)
            return True
        if status == 429:
            await asyncio.sleep(retry_after(response))
            return False
        raise httpx.HTTPStatusError(
            f"events answered {status}", request=response.request, response=response
        )

    async def send_pending(self) -> int:
        """Send batches until the spool is empty; returns events sent. Raises on failures."""
        sent_before = self.sent
        while True:
            batch = await self._in_worker(self.spool.cut)
            if batch is None:
                return self.sent - sent_before
            while not await self.send_one(batch):
                pass

    async def _sender(self) -> None:
        while True:
            try:
                await self.send_pending()
            except asyncio.CancelledError:
                raise
            except (
                httpx.HTTPError, EnrolmentError, ServerError, OSError, ValueError, sqlite3.Error
            ) as exc:  # fmt: skip
                self.errors += 1
                delay = self.backoff.next_delay()
                log.warning(
                    "reporter.send_failed",
                    error=repr(exc),
                    retry_in=round(delay, 2),
                    pending=len(self.spool),
                )
                await asyncio.sleep(delay)
                continue
            self.backoff.reset()
            self._spooled.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._spooled.wait()

    async def _stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            log.info("reporter.stats", **self.stats)

    @property
    def stats(self) -> dict[str, int]:
        """Counters since start, plus the spool's (pending, dropped, bound_reached)."""
        return {
            "sent": self.sent,
            "batches": self.batches,
            "rejected": self.rejected,
            "errors": self.errors,
            "lost": self.lost,
            "buffered": len(self._buffer),
            **self.spool.stats,
        }

    async def run(self) -> None:
        """Flush and send until cancelled."""
        tasks = [self._flusher(), self._stats()]
        if self.session is not None:
            tasks.append(self._sender())
        await asyncio.gather(*tasks)

    async def aclose(self, send_timeout: float = 2.0) -> None:
        """Shutdown: spool what is buffered, try a last short send, close the spool."""
        await self.flush()
        if self.session is not None and len(self.spool):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(send_timeout):
                    await self.send_pending()
        await self._in_worker(self.spool.close)
        self._worker.shutdown(wait=True)


def _acknowledges(response: httpx.Response, batch_id: str) -> bool:
    """Whether an upload's 200 answer is the API's `EventsAccepted` naming `batch_id`."""
    try:
        answer = EventsAccepted.model_validate_json(response.content)
    except ValueError:  # pydantic's ValidationError is one
        return False
    return batch_id in answer.accepted
