"""The sync client: deltas on a live matcher, and the whole loop against the real server.

The first tests drive `DeviceIndicators` (the per-domain table that feeds the matcher)
directly; the others start the real server (`enforcer.api`) with uvicorn on a free port of
127.0.0.1, against a SQLite store in tmp_path, and create indicators through the store.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import stat
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from enforcer.decide.matcher import Matcher
from enforcer.models import Action, Indicator
from enforcer.shim.indicator_cache import IndicatorCache
from enforcer.shim.report import identity
from enforcer.shim.sync import (
    Backoff,
    DeviceIndicators,
    ServerSession,
    SyncClient,
    Update,
)

ADMIN_TOKEN = "admin-token-for-tests-0123456789abcdef"
ENROLL_SECRET = "enroll-secret-for-tests-0123456789"


def ind(value: str, action: Action = Action.BLOCK, scope: str = "", app: str = "") -> Indicator:
    return Indicator(value, action, scope=scope, app_id=app)


def apply(held: DeviceIndicators, matcher: Matcher, update: Update) -> int:
    return asyncio.run(held.apply(update, matcher))


# --- the table and the live matcher (no server) -------------------------------------------


def test_group_scoped_indicator_beats_all_devices_and_removal_falls_back() -> None:
    held = DeviceIndicators(groups=("eng",))
    matcher = Matcher()
    apply(
        held,
        matcher,
        Update(
            1,
            True,
            [
                ind("ngrok.example", Action.BLOCK),
                ind("ngrok.example", Action.AUDIT, scope="eng"),
                ind("paste.example", Action.BLOCK, scope="sales"),
                ind("drive.example", Action.WARN, app="drive"),
            ],
            [],
        ),
    )
    assert matcher.verdict("ngrok.example").action is Action.AUDIT
    assert matcher.verdict("paste.example").action is None, "another group's indicator"
    assert matcher.verdict("x.drive.example").app_id == "drive"
    apply(held, matcher, Update(2, False, [], [("eng", "ngrok.example")]))
    assert matcher.verdict("ngrok.example").action is Action.BLOCK
    # A weaker action replacing a stronger one for the same key is applied (not merged).
    apply(held, matcher, Update(3, False, [ind("ngrok.example", Action.AUDIT)], []))
    assert matcher.verdict("ngrok.example").action is Action.AUDIT
    apply(held, matcher, Update(4, False, [], [("", "ngrok.example")]))
    assert matcher.verdict("ngrok.example").action is None
    assert len(matcher) == 1


def test_a_snapshot_is_applied_as_a_difference() -> None:
    held = DeviceIndicators(groups=())
    matcher = Matcher()
    apply(held, matcher, Update(1, True, [ind(f"d{i}.example") for i in range(10)], []))
    touched = apply(
        held,
        matcher,
        Update(2, True, [ind(f"d{i}.example") for i in range(5, 12)], []),
    )
    assert touched == 7, "5 removed, 2 new; the 5 unchanged are not swapped"
    assert {f"d{i}.example" for i in range(5, 12)} == {
        d for d in (f"d{i}.example" for i in range(20)) if matcher.verdict(d).blocked
    }


def test_a_big_delta_yields_to_the_loop_and_never_opens_a_gap() -> None:
    """While 200,000 entries are applied, queries run, and a moved entry is never missing."""
    held = DeviceIndicators(groups=("eng",))
    matcher = Matcher()
    apply(held, matcher, Update(1, True, [ind("moved.example")], []))

    async def scenario() -> tuple[int, float, int]:
        ticks = 0
        gaps = 0
        worst = 0.0
        done = False

        async def query() -> None:
            nonlocal ticks, gaps, worst
            last = time.perf_counter()
            while not done:
                await asyncio.sleep(0)
                now = time.perf_counter()
                worst = max(worst, now - last)
                last = now
                ticks += 1
                if not matcher.verdict("moved.example").blocked:
                    gaps += 1

        upserts = [ind(f"n{i}.example") for i in range(200_000)]
        upserts.append(ind("moved.example", scope="eng"))
        task = asyncio.create_task(query())
        await asyncio.sleep(0)
        await held.apply(Update(2, False, upserts, [("", "moved.example")]), matcher)
        done = True
        await task
        return ticks, worst, gaps

    ticks, worst, gaps = asyncio.run(scenario())
    assert len(matcher) == 200_001
    assert gaps == 0
    assert ticks > 50
    # Steps are ~1 ms; the bound leaves room for full GC passes and a busy CI machine.
    assert worst < 0.5, f"the loop was held for {worst:.3f} s"


def test_backoff_is_full_jitter_and_capped() -> None:
    backoff = Backoff(base=0.5, cap=4)
    delays = [backoff.next_delay() for _ in range(10)]
    assert all(0 <= d <= 4 for d in delays)
    assert delays[0] <= 0.5
    backoff.reset()
    assert backoff.next_delay() <= 0.5


# --- against the real server -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """`enforcer serve`'s app under uvicorn in a thread; can be stopped and started again."""

    def __init__(self, db_path: Path) -> None:
        api_app = pytest.importorskip(
            "enforcer.api.app", reason="the server (enforcer.api.app) is not there yet"
        )
        from enforcer.config import Settings
        from enforcer.store.db import make_engine
        from enforcer.store.migrate import upgrade

        self._api_app = api_app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        database_url = f"sqlite:///{db_path}"
        self.engine = make_engine(database_url)
        upgrade(self.engine)
        self.settings = Settings(
            database_url=database_url,
            admin_token=ADMIN_TOKEN,
            enroll_secret=ENROLL_SECRET,
            server_host="127.0.0.1",
            server_port=self.port,
            # Scoping through a real server, not who decides groups (tests/api/test_groups.py).
            trust_device_groups=True,
        )
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        import uvicorn

        app = make_app(self._api_app, self.settings, self.engine)
        # Long-polls in flight would hold a graceful shutdown for their whole wait.
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(15)
            self._server = None

    def add(self, indicator: Indicator) -> int:
        from enforcer.store.manual import add_manual

        new_id, _ = add_manual(self.engine, indicator, actor="test")
        return new_id

    def delete(self, indicator_id: int) -> None:
        from enforcer.store.manual import delete_manual

        delete_manual(self.engine, indicator_id, actor="test")


def make_app(api_app: Any, settings: Any, engine: Any) -> Any:
    """The server's app for these settings and this store (fast long-poll for tests)."""
    return api_app.create_app(settings, engine=engine)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "server.sqlite")
    server.start()
    yield server
    server.stop()
    server.engine.dispose()


class Device:
    """A sync client (session, table, cache, matcher) as a shim would build it."""

    def __init__(self, url: str, state: Path, groups: tuple[str, ...] = ()) -> None:
        self.state = state
        self.device = identity.load_identity(state, groups)
        self.cache = IndicatorCache(state / "indicators.sqlite")
        self.matcher = Matcher()
        held = SyncClient.load_cache(self.cache, groups, self.matcher)
        self.session = ServerSession(url, ENROLL_SECRET, self.device, state)
        self.client = SyncClient(
            self.session,
            self.matcher,
            held,
            self.cache,
            wait=5,
            backoff=Backoff(base=0.05, cap=0.5),
        )
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.client.run())

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.session.aclose()
        self.cache.close()

    def action(self, name: str) -> Action | None:
        return self.matcher.verdict(name).action


async def eventually(check: Callable[[], bool], within: float = 3.0) -> float:
    """Wait until `check()` is true; returns the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            raise AssertionError(f"not true within {within} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    return asyncio.run(main())


@pytest.mark.timeout(60)
def test_enrol_snapshot_long_poll_and_removal(live_server: LiveServer, tmp_path: Path) -> None:
    live_server.add(ind("mega.example", app="mega"))

    async def scenario() -> float:
        device = Device(live_server.url, tmp_path / "state")
        gc.unfreeze()
        device.start()
        try:
            await eventually(lambda: device.action("x.mega.example") is Action.BLOCK)
            # The set applied lives until the next update: left out of the collector's passes.
            assert gc.get_freeze_count() > 0
            token = device.state / identity.TOKEN_FILE
            assert stat.S_IMODE(token.stat().st_mode) == 0o600
            assert {i.value for i in device.cache.indicators()} == {"mega.example"}
            assert device.cache.revision == device.client.revision
            new_id = await asyncio.to_thread(live_server.add, ind("paste.example"))
            took = await eventually(lambda: device.action("paste.example") is Action.BLOCK)
            await asyncio.to_thread(live_server.delete, new_id)
            await eventually(lambda: device.action("paste.example") is None)
            assert device.action("mega.example") is Action.BLOCK
            return took
        finally:
            await device.close()
            gc.unfreeze()

    took = run(scenario())
    assert took < 2.0, f"a new indicator took {took:.2f} s to arrive"


@pytest.mark.timeout(60)
def test_scopes_through_the_server(live_server: LiveServer, tmp_path: Path) -> None:
    live_server.add(ind("ngrok.example", Action.BLOCK))
    live_server.add(ind("ngrok.example", Action.AUDIT, scope="eng"))
    live_server.add(ind("sales-only.example", Action.BLOCK, scope="sales"))
    live_server.add(ind("everyone.example", Action.BLOCK))

    async def scenario() -> None:
        eng = Device(live_server.url, tmp_path / "eng", ("eng",))
        other = Device(live_server.url, tmp_path / "other")
        eng.start()
        other.start()
        try:
            await eventually(lambda: eng.action("everyone.example") is Action.BLOCK)
            await eventually(lambda: other.action("everyone.example") is Action.BLOCK)
            assert eng.action("ngrok.example") is Action.AUDIT
            assert other.action("ngrok.example") is Action.BLOCK
            assert eng.action("sales-only.example") is None
            assert "sales" not in {i.scope for i in eng.cache.indicators()}
        finally:
            await eng.close()
            await other.close()

    run(scenario())


@pytest.mark.timeout(90)
def test_server_outage_and_restart_from_the_cache(live_server: LiveServer, tmp_path: Path) -> None:
    live_server.add(ind("mega.example"))
    state = tmp_path / "state"

    async def online_then_outage() -> None:
        device = Device(live_server.url, state)
        device.start()
        try:
            await eventually(lambda: device.action("mega.example") is Action.BLOCK)
            await asyncio.to_thread(live_server.stop)
            errors = device.client.errors
            await eventually(lambda: device.client.errors >= errors + 3, within=10)
            assert device.action("mega.example") is Action.BLOCK, "the set is kept in memory"
            assert device.task is not None and not device.task.done()
        finally:
            await device.close()

    run(online_then_outage())
    # While the server is down, an admin adds an indicator (straight into the store).
    live_server.add(ind("later.example"))

    async def restart_offline_then_catch_up() -> None:
        device = Device(live_server.url, state)
        # Before any request: the cached set is enforced at once.
        assert device.action("mega.example") is Action.BLOCK
        device.start()
        try:
            await asyncio.sleep(0.5)
            assert device.action("mega.example") is Action.BLOCK
            assert device.action("later.example") is None
            await asyncio.to_thread(live_server.start)
            await eventually(lambda: device.action("later.example") is Action.BLOCK, within=10)
        finally:
            await device.close()

    run(restart_offline_then_catch_up())


@pytest.mark.timeout(60)
def test_a_rejected_token_leads_to_a_new_enrolment(live_server: LiveServer, tmp_path: Path) -> None:
    live_server.add(ind("mega.example"))
    state = tmp_path / "state"
    identity.save_token(state, "not-a-token-the-server-knows")

    async def scenario() -> None:
        device = Device(live_server.url, state)
        device.start()
        try:
            await eventually(lambda: device.action("mega.example") is Action.BLOCK)
        finally:
            await device.close()

    run(scenario())
    assert identity.read_token(state) != "not-a-token-the-server-knows"


@pytest.mark.timeout(60)
def test_a_changed_group_re_enrols_and_resyncs(live_server: LiveServer, tmp_path: Path) -> None:
    live_server.add(ind("ngrok.example", Action.BLOCK))
    live_server.add(ind("ngrok.example", Action.AUDIT, scope="eng"))
    state = tmp_path / "state"

    async def as_member_of(groups: tuple[str, ...], expected: Action) -> str | None:
        device = Device(live_server.url, state, groups)
        device.start()
        try:
            await eventually(lambda: device.action("ngrok.example") is expected)
        finally:
            await device.close()
        return identity.read_token(state)

    first = run(as_member_of((), Action.BLOCK))
    second = run(as_member_of(("eng",), Action.AUDIT))
    assert second != first, "the device enrolled again with its new group"
    assert identity.enrolled_groups(state) == ("eng",)
    run(as_member_of((), Action.BLOCK))


@pytest.mark.timeout(60)
def test_a_disk_that_refuses_writes_never_stops_enforcement(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk under the cache: every change still reaches the matcher, the failure is
    counted, the cache stays consistent at its older revision (what a restart loads), and
    once the disk takes writes again a whole set brings it up to date."""
    import sqlite3

    from enforcer.shim import sync as sync_module

    live_server.add(ind("mega.example"))

    async def scenario() -> None:
        device = Device(live_server.url, tmp_path / "state")
        device.start()
        real_apply = device.cache.apply
        full = {"on": False}

        def apply(*args: Any, **kwargs: Any) -> None:
            if full["on"]:
                raise sqlite3.OperationalError("database or disk is full")
            real_apply(*args, **kwargs)

        monkeypatch.setattr(device.cache, "apply", apply)
        try:
            await eventually(lambda: device.action("mega.example") is Action.BLOCK)
            cached = device.cache.revision
            full["on"] = True
            await asyncio.to_thread(live_server.add, ind("paste.example"))
            await eventually(lambda: device.action("paste.example") is Action.BLOCK)
            await asyncio.to_thread(live_server.add, ind("third.example"))
            await eventually(lambda: device.action("third.example") is Action.BLOCK)
            assert device.client.cache_errors == 1, "later deltas are not written at all"
            assert device.client.cache_behind_since is not None
            assert device.cache.revision == cached, "the cache stays consistent, older"
            assert not device.task.done() if device.task else False
            # The disk is back: the next retry asks for the whole set and writes it.
            full["on"] = False
            monkeypatch.setattr(sync_module, "CACHE_RETRY", 0.0)
            await asyncio.to_thread(live_server.add, ind("fourth.example"))
            await eventually(lambda: device.client.cache_behind_since is None, within=10)
            assert {i.value for i in device.cache.indicators()} >= {
                "mega.example", "paste.example", "third.example"
            }  # fmt: skip
            assert device.cache.revision == device.client.revision
        finally:
            await device.close()

    run(scenario())
