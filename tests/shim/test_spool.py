"""The event spool: batches with stable ids, acknowledgement, the bound, restarts; delivery."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from enforcer.models import EventAction, NetworkEvent
from enforcer.shim.report.identity import DeviceIdentity, load_identity
from enforcer.shim.report.reporter import Reporter, event_body
from enforcer.shim.report.spool import Spool
from enforcer.shim.sync import Backoff, ServerSession

from .test_sync import ENROLL_SECRET, LiveServer, eventually

DEVICE = DeviceIdentity("d-1", "host-1", "Linux", "alice", ("10.0.0.5",), ("eng",))


def events(n: int, start: int = 0) -> list[dict[str, object]]:
    return [{"domain": f"e{i}.example", "n": i} for i in range(start, start + n)]


def numbers(batch_events: list[dict[str, object]]) -> list[object]:
    return [e["n"] for e in batch_events]


def test_cut_returns_the_same_batch_until_acked(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_batch=1000)
    spool.append(events(2500))
    first = spool.cut()
    assert first is not None
    assert numbers(first.events) == list(range(1000))
    again = spool.cut()
    assert again == first
    assert spool.ack(first.batch_id) == 1000
    assert len(spool) == 1500
    second = spool.cut()
    assert second is not None and second.batch_id != first.batch_id
    assert numbers(second.events) == list(range(1000, 2000))
    spool.ack(second.batch_id)
    third = spool.cut()
    assert third is not None and numbers(third.events) == list(range(2000, 2500))
    spool.ack(third.batch_id)
    assert spool.cut() is None
    assert len(spool) == 0


def test_events_appended_after_a_cut_go_to_the_next_batch(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_batch=10)
    spool.append(events(3))
    batch = spool.cut()
    assert batch is not None
    spool.append(events(2, start=3))
    assert spool.cut() == batch
    spool.ack(batch.batch_id)
    nxt = spool.cut()
    assert nxt is not None and numbers(nxt.events) == [3, 4]


def test_a_batch_cut_before_a_crash_is_resent_with_the_same_id(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path, max_batch=100)
    spool.append(events(150))
    batch = spool.cut()
    assert batch is not None
    # A crash: the connection is never closed properly; a new process opens the file.
    del spool
    reopened = Spool(path, max_batch=100)
    assert len(reopened) == 150
    assert reopened.cut() == batch
    reopened.ack(batch.batch_id)
    rest = reopened.cut()
    assert rest is not None and numbers(rest.events) == list(range(100, 150))


def test_the_spool_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path)
    spool.append(events(7))
    spool.close()
    reopened = Spool(path)
    assert len(reopened) == 7
    batch = reopened.cut()
    assert batch is not None and numbers(batch.events) == list(range(7))
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_bound_drops_the_oldest_unsent_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path, max_events=10, max_batch=4)
    spool.append(events(8))
    batch = spool.cut()  # events 0..3 are in flight
    assert batch is not None
    assert spool.append(events(5, start=8)) == 3
    assert len(spool) == 10
    assert spool.dropped == 3
    assert spool.bound_reached == 1
    # The batch in flight keeps its content; the oldest *unsent* (4, 5, 6) went. Batches were
    # made when their events were appended (4..7 is what is left of one; 8..11, 12 follow).
    assert spool.cut() == batch
    spool.ack(batch.batch_id)
    sent = []
    while (rest := spool.cut()) is not None:
        sent.append(numbers(rest.events))
        spool.ack(rest.batch_id)
    assert sent == [[7], [8, 9, 10, 11], [12]]
    # One append larger than the whole bound keeps its newest events only.
    assert spool.append(events(30, start=100)) > 0
    assert len(spool) == 10
    spool.close()
    reopened = Spool(path, max_events=10)
    assert reopened.dropped == spool.dropped
    assert reopened.bound_reached == 2


def test_event_body_carries_the_device_context() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    event = NetworkEvent(
        when, "dns", "mega.nz", EventAction.BLOCKED, "mega.nz", "mega", dest_port=53
    )
    body = event_body(event, DEVICE)
    assert body == {
        "time": "2026-01-02T03:04:05Z",
        "hostname": "host-1",
        "user": "alice",
        "localIp": "10.0.0.5",
        "domain": "mega.nz",
        "destIp": "",
        "destPort": 53,
        "bytesUp": 0,
        "bytesDown": 0,
        "action": "blocked",
        "indicator": "mega.nz",
        "application": "mega",
        "source": "dns",
        "pid": 0,
        "processName": "",
        "processPath": "",
    }


@pytest.mark.timeout(30)
def test_reporter_flushes_events_to_the_spool_without_a_server(tmp_path: Path) -> None:
    async def scenario() -> int:
        spool = Spool(tmp_path / "s.sqlite")
        reporter = Reporter(spool, DEVICE, None, flush_interval=0.05, flush_events=10)
        task = asyncio.create_task(reporter.run())
        for i in range(25):
            reporter.on_event(
                NetworkEvent(dt.datetime.now(dt.UTC), "proxy", f"x{i}.example", EventAction.ALLOWED)
            )
        for _ in range(100):
            await asyncio.sleep(0.02)
            if len(spool) == 25:
                break
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await reporter.aclose()
        return len(Spool(tmp_path / "s.sqlite"))

    assert asyncio.run(scenario()) == 25


# --- delivery to the real server ----------------------------------------------------------


def stored_events(server: LiveServer) -> int:
    from enforcer.store.events import count_events

    with server.engine.connect() as conn:
        return count_events(conn)


@pytest.mark.timeout(60)
def test_events_survive_an_outage_and_are_stored_exactly_once(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "server.sqlite")  # not started yet: the server is down
    state = tmp_path / "state"
    device = load_identity(state)

    def event(i: int) -> NetworkEvent:
        return NetworkEvent(dt.datetime.now(dt.UTC), "dns", f"e{i}.example", EventAction.ALLOWED)

    async def outage() -> None:
        session = ServerSession(server.url, ENROLL_SECRET, device, state)
        spool = Spool(state / "events.sqlite", max_batch=100)
        reporter = Reporter(spool, device, session, flush_interval=0.05, backoff=Backoff(0.05, 0.2))
        task = asyncio.create_task(reporter.run())
        for i in range(250):
            reporter.on_event(event(i))
        await eventually(lambda: len(spool) == 250 and reporter.errors >= 2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await reporter.aclose(send_timeout=0.5)  # the shim stops while the server is down
        await session.aclose()

    asyncio.run(outage())
    server.start()
    try:

        async def lost_acknowledgement() -> str:
            # The first batch reaches the server, but its 200 is lost (no ack in the spool).
            session = ServerSession(server.url, ENROLL_SECRET, device, state)
            spool = Spool(state / "events.sqlite", max_batch=100)
            batch = spool.cut()
            assert batch is not None
            response = await session.request(
                "POST", "/events", json={"batchId": batch.batch_id, "events": batch.events}
            )
            assert response.status_code == 200
            spool.close()
            await session.aclose()
            return batch.batch_id

        first_id = asyncio.run(lost_acknowledgement())
        assert stored_events(server) == 100

        async def restart() -> None:
            session = ServerSession(server.url, ENROLL_SECRET, device, state)
            spool = Spool(state / "events.sqlite", max_batch=100)
            resumed = spool.cut()
            assert resumed is not None and resumed.batch_id == first_id
            reporter = Reporter(spool, device, session, flush_interval=0.05)
            task = asyncio.create_task(reporter.run())
            await eventually(lambda: len(spool) == 0, within=10)
            assert reporter.sent == 250
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await reporter.aclose()
            await session.aclose()

        asyncio.run(restart())
        assert stored_events(server) == 250, "the re-sent batch was stored once"
    finally:
        server.stop()
        server.engine.dispose()


def test_a_failing_spool_write_keeps_the_events_for_the_next_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    reporter = Reporter(spool, DEVICE, None)
    real_append = spool.append

    def disk_full(rows: object, **journal: object) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    async def scenario() -> None:
        for i in range(3):
            reporter.on_event(
                NetworkEvent(dt.datetime.now(dt.UTC), "dns", f"x{i}.example", EventAction.ALLOWED)
            )
        monkeypatch.setattr(spool, "append", disk_full)
        assert await reporter.flush() == 0
        assert reporter.stats["buffered"] == 3
        monkeypatch.setattr(spool, "append", real_append)
        assert await reporter.flush() == 3
        await reporter.aclose()

    asyncio.run(scenario())
    assert len(Spool(tmp_path / "s.sqlite")) == 3
    assert reporter.lost == 0


@pytest.mark.timeout(60)
def test_a_200_that_is_not_the_apis_acknowledgement_keeps_the_events(tmp_path: Path) -> None:
    """A maintenance page, a captive portal or a wrong --server answering 200 is an outage:
    the events stay in the spool, the reporter backs off, and they go once the API answers."""
    import json

    import httpx

    answers = {"mode": "portal"}
    stored: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/enroll"):
            return httpx.Response(
                201, json={"deviceId": "d-1", "deviceToken": "t" * 40, "groups": []}
            )
        body = json.loads(request.content)
        if answers["mode"] == "portal":
            return httpx.Response(200, html="<html>Welcome! Accept the terms to continue</html>")
        if answers["mode"] == "other-batch":
            return httpx.Response(200, json={"accepted": ["x"], "duplicate": False, "count": 1})
        stored.append(body["batchId"])
        return httpx.Response(
            200, json={"accepted": [body["batchId"]], "duplicate": False, "count": 1}
        )

    state = tmp_path / "state"
    device = load_identity(state)

    async def scenario() -> None:
        client = httpx.AsyncClient(
            base_url="http://enforcer.test", transport=httpx.MockTransport(handler)
        )
        session = ServerSession("http://enforcer.test", ENROLL_SECRET, device, state, client=client)
        spool = Spool(state / "events.sqlite", max_batch=10)
        reporter = Reporter(spool, device, session, flush_interval=0.05, backoff=Backoff(0.05, 0.1))
        task = asyncio.create_task(reporter.run())
        try:
            for i in range(25):
                reporter.on_event(
                    NetworkEvent(
                        dt.datetime.now(dt.UTC), "dns", f"e{i}.example", EventAction.ALLOWED
                    )
                )
            await eventually(lambda: reporter.errors >= 2 and len(spool) == 25)
            answers["mode"] = "other-batch"
            errors = reporter.errors
            await eventually(lambda: reporter.errors >= errors + 2)
            assert len(spool) == 25 and reporter.sent == 0, "nothing was let go"
            answers["mode"] = "api"
            await eventually(lambda: len(spool) == 0, within=10)
            assert reporter.sent == 25 and len(stored) == 3
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await reporter.aclose()
            await session.aclose()

    asyncio.run(scenario())


def test_an_enrolment_answered_by_a_portal_is_an_outage_not_a_crash(tmp_path: Path) -> None:
    import httpx

    from enforcer.shim.sync import ServerError

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, html="<html>Sign in to the hotel Wi-Fi</html>")

    state = tmp_path / "state"
    device = load_identity(state)

    async def scenario() -> None:
        client = httpx.AsyncClient(
            base_url="http://enforcer.test", transport=httpx.MockTransport(handler)
        )
        session = ServerSession("http://enforcer.test", ENROLL_SECRET, device, state, client=client)
        try:
            with pytest.raises(ServerError, match="other than the API's answer"):
                await session.enrol()
            assert not session.enrolled
        finally:
            await session.aclose()

    asyncio.run(scenario())
