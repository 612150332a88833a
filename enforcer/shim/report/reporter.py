"""The event reporter: front-end events, with device context, to the spool and on to the server.

The front ends call `Reporter.on_event` on the event loop for every answer or connection they
report, *before* the answer leaves: it appends the event's own fields (one JSON array) to the
write-ahead journal with one ``write(2)`` (`enforcer.shim.report.journal`), so that a `kill -9`
right after an answer cannot lose its event, then keeps it in an in-memory list. The DNS
listener answers up to 64 datagrams per event-loop pass: it calls `Reporter.hold` before them
and `Reporter.commit` before sending the first answer, so their events reach the journal with
one ``write(2)`` for the whole pass (`enforcer.shim.verdict.EventBatch`). The wire
object, with the device context, is built by the flush. A flusher moves that list to the on-disk spool every ``flush_interval`` seconds, or as
soon as ``flush_events`` are waiting, in a worker thread (one transaction per flush), and then
deletes the journal segments the spool now holds. At start the journal's events that had not
reached the spool are appended to it first (exactly once: the spool keeps the journal sequence
number of its last event). A sender cuts
batches of up to 1,000 events from the spool and posts them to ``POST /api/v1/events``; a batch
leaves the spool only after the server's 200 (see `enforcer.shim.report.spool` for the batch-id rules
that make a re-send count once).

Device context: every event gets the device's hostname, its user (the front end's, else the
logged-in one) and its local IP here, so the front ends stay free of it.

Errors: a server that is down or answers 5xx/429 is retried with full-jitter backoff and nothing
is lost. A batch the server refuses as malformed (422) or oversized (413) can never succeed: it
is logged with its id and discarded so it does not block every later batch (``rejected``).

Disk failures: an event the journal could not take (a full disk) stays in memory only; a flush
the spool refuses keeps the events in memory (at most ``MAX_BUFFERED``; older ones beyond are
counted in ``lost``) until a later flush succeeds. Events in memory only when the shim stops
with a refusing disk are counted in ``lost`` too, as are the events of a spool kept in memory
(a read-only state directory), so the ``shim.stopped`` log says what was lost.

The spool's ``dropped`` counter (events lost to the spool bound) is reported with each batch in
the ``X-Enforcer-Dropped`` header and in the periodic ``reporter.stats`` log event.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import structlog

from enforcer.models import EventAction, NetworkEvent
from enforcer.shim.report import journal
from enforcer.shim.report.identity import DeviceIdentity
from enforcer.shim.report.spool import Batch, Spool
from enforcer.shim.sync import Backoff, EnrolmentError, ServerError, ServerSession, retry_after
from enforcer.wire.events import EventsAccepted, event_json

log = structlog.get_logger(__name__)
_T = TypeVar("_T")

STATS_INTERVAL = 60.0
MAX_BUFFERED = 100_000
"""Events kept in memory while the spool cannot be written; older ones are dropped (``lost``)."""

# One encoder for every event (json.dumps with separators builds one per call); an event body
# is a flat dictionary, so the circular-reference check is skipped.
_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


class _Unjournaled:
    """An event the journal did not take (a full disk): in memory only until spooled."""

    __slots__ = ("event",)

    def __init__(self, event: NetworkEvent) -> None:
        self.event = event


def journal_line(event: NetworkEvent) -> str:
    """The journal's form of an event: its own fields as one JSON array (about a third of the
    cost of the wire object, which the flush builds with the device context)."""
    when = event.time if event.time.tzinfo else event.time.replace(tzinfo=dt.UTC)
    return _encode((
        when.timestamp(), event.source, event.domain, event.action, event.indicator,
        event.app_id, event.dest_ip, event.dest_port, event.bytes_up, event.bytes_down,
        event.user, event.client_ip, event.client_port, event.pid, event.process_name,
        event.process_path,
    ))  # fmt: skip


def from_journal_line(line: str) -> NetworkEvent:
    """The event `journal_line` wrote (ValueError/TypeError when the line is not one)."""
    (when, source, domain, action, indicator, app_id, dest_ip, dest_port, bytes_up, bytes_down,
     user, client_ip, client_port, pid, process_name, process_path) = json.loads(line)  # fmt: skip
    return NetworkEvent(
        time=dt.datetime.fromtimestamp(float(when), dt.UTC),
        source=str(source), domain=str(domain), action=EventAction(action),
        indicator=str(indicator), app_id=str(app_id), dest_ip=str(dest_ip),
        dest_port=int(dest_port), bytes_up=int(bytes_up), bytes_down=int(bytes_down),
        user=str(user), client_ip=str(client_ip), client_port=int(client_port), pid=int(pid),
        process_name=str(process_name), process_path=str(process_path),
    )  # fmt: skip


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
        journal_dir: Path | None = None,
    ) -> None:
        """`journal_dir`: where the write-ahead journal lives (None: events are in memory
        until each flush). Its events left by a previous run are spooled here, first."""
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
        """Events that could be kept neither on disk nor in memory (see the module docstring)."""
        self.journal_errors = 0
        """Events the journal could not take (a full or failing disk)."""
        self.recovered = 0
        """Events of the journal a previous run left that this one spooled at start."""
        self._buffer: list[NetworkEvent | _Unjournaled] = []
        self._holding = False
        self._held: list[NetworkEvent] = []
        """Events since `hold`, numbered up to ``_seq``: journaled at `commit`."""
        self._seq = spool.journal_seq
        self._full = asyncio.Event()
        self._spooled = asyncio.Event()
        # One worker thread owns the spool: appends, cuts and acks never run concurrently.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self.journal: journal.Journal | None = None
        self._journal_wanted = journal_dir is not None
        if journal_dir is not None:
            self._open_journal(journal_dir)

    def _open_journal(self, directory: Path) -> None:
        """Spool what the last run's journal holds beyond the spool, then open a new segment."""
        spooled = self.spool.journal_seq
        try:
            pending = list(journal.replay(directory, spooled)) if directory.is_dir() else []
        except OSError:
            log.exception("reporter.journal_unreadable", path=str(directory))
            pending = []
        held = max((seq for seq, _ in pending), default=spooled)
        self._seq = max(self._seq, held)
        if self.spool.volatile:
            # A spool in memory (a read-only state directory) would take the journal's events
            # again at every start, in new batches: they wait on disk for a writable spool.
            log.warning("reporter.journal_left_on_disk", path=str(directory), events=len(pending))
            self._journal_wanted = False
            return
        if pending:
            events = []
            for _, line in pending:
                try:
                    events.append(from_journal_line(line))
                except (ValueError, TypeError):
                    log.warning("reporter.journal_line_unreadable", line=line[:200])
            try:
                self._store(events, held)
            except (sqlite3.Error, OSError):
                log.exception("reporter.journal_replay_failed", events=len(events))
                self._buffer = list(events)  # still in the journal's segments, which are kept
            else:
                self.recovered = len(events)
                log.info("reporter.journal_replayed", events=len(events), seq=held)
        try:
            self.journal = journal.Journal(directory, held_until=held)
            self.journal.release(self.spool.journal_seq)
        except OSError:
            log.exception("reporter.journal_unavailable", path=str(directory))

    def on_event(self, event: NetworkEvent) -> None:
        """The front ends' ``on_event`` callback: one ``write(2)`` to the journal, never blocks
        on anything else. Called before the answer is sent. Between `hold` and `commit` the
        event waits for `commit`, which journals all of them at once."""
        self._seq += 1
        if self._holding:
            self._held.append(event)
            return
        journal_ = self.journal
        kept: NetworkEvent | _Unjournaled = event
        if journal_ is None or not journal_.write(self._seq, journal_line(event)):
            kept = _Unjournaled(event)
            if journal_ is not None or self._journal_wanted:
                self.journal_errors += 1
                if self.journal_errors == 1 or self.journal_errors % 10_000 == 0:
                    log.error("reporter.journal_write_failed", events=self.journal_errors)
        self._buffer.append(kept)
        if len(self._buffer) >= self.flush_events:
            self._full.set()

    def hold(self) -> None:
        """Keep the next events for one `commit`: a front end calls it before the answers of one
        event-loop pass and `commit` before sending the first of them (`EventBatch`)."""
        self._holding = True

    def commit(self) -> None:
        """Journal the events held since `hold` with one ``write(2)``; they then count as
        `on_event` had taken them one by one (those the disk refused stay in memory only)."""
        self._holding = False
        held = self._held
        if not held:
            return
        self._held = []
        journal_ = self.journal
        first = self._seq - len(held) + 1
        try:
            lines = [(first + i, journal_line(event)) for i, event in enumerate(held)]
        except Exception:  # an event that cannot be serialised: keep them all in memory
            log.exception("reporter.journal_line_failed", events=len(held))
            journal_ = None
        if journal_ is not None and journal_.write_many(lines):
            self._buffer.extend(held)
        else:
            self._buffer.extend(_Unjournaled(event) for event in held)
            if journal_ is not None or self._journal_wanted:
                before = self.journal_errors
                self.journal_errors += len(held)
                if before == 0 or before // 10_000 != self.journal_errors // 10_000:
                    log.error("reporter.journal_write_failed", events=self.journal_errors)
        if len(self._buffer) >= self.flush_events:
            self._full.set()

    async def _in_worker(self, func: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, func, *args)

    def _store(self, events: Sequence[NetworkEvent | _Unjournaled], seq: int) -> int:
        bodies = [
            event_body(e.event if isinstance(e, _Unjournaled) else e, self.device) for e in events
        ]
        return self.spool.append(bodies, journal_seq=seq)

    async def flush(self) -> int:
        """Move the buffered events to the spool; returns how many were moved."""
        bodies, self._buffer = self._buffer, []
        seq = self._seq
        self._full.clear()
        if not bodies:
            return 0
        if self.journal is not None:
            self.journal.rotate()  # later events go to a new segment; this one is released below
        append = functools.partial(self._store, bodies, seq)
        try:
            dropped = await self._in_worker(append)
        except (sqlite3.Error, OSError):
            # A full or failing disk: keep the events in memory (bounded) and try again later.
            log.exception("reporter.spool_write_failed", events=len(bodies))
            room = max(0, MAX_BUFFERED - len(self._buffer))
            kept = bodies[len(bodies) - room :] if room < len(bodies) else bodies
            self.lost += len(bodies) - len(kept)
            self._buffer[:0] = kept
            return 0
        if self.journal is not None:
            self.journal.release(seq)
        if dropped:
            log.warning("reporter.spool_full", dropped=dropped, max_events=self.spool.max_events)
        self._spooled.set()
        return len(bodies)

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
            "journal_errors": self.journal_errors,
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
        """Shutdown: spool what is buffered, try a last short send, close the spool.

        What cannot be kept is counted in ``lost`` before the caller logs the stats: events in
        memory only (the spool and the journal refused them), and a volatile spool's events.
        """
        await self.flush()
        if self.session is not None and len(self.spool):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(send_timeout):
                    await self.send_pending()
        if self.journal is not None:
            self.journal.close()  # what it holds beyond the spool is replayed at the next start
            self.journal = None
        self.lost += sum(isinstance(body, _Unjournaled) for body in self._buffer)
        if self.spool.volatile:
            self.lost += len(self.spool)
        await self._in_worker(self.spool.close)
        self._worker.shutdown(wait=True)


def _acknowledges(response: httpx.Response, batch_id: str) -> bool:
    """Whether an upload's 200 answer is the API's `EventsAccepted` naming `batch_id`."""
    try:
        answer = EventsAccepted.model_validate_json(response.content)
    except ValueError:  # pydantic's ValidationError is one
        return False
    return batch_id in answer.accepted
