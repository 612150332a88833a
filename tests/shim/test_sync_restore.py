"""The shim after the store is restored from a backup: it takes the snapshot and drops what the
restore undid, whether it was long-polling across the restore or restarted from its cache."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from enforcer.api import ApiLimits, create_app
from enforcer.decide.matcher import Matcher
from enforcer.models import Action
from enforcer.shim.indicator_cache import IndicatorCache
from enforcer.shim.report import identity
from enforcer.shim.sync import Backoff, ServerSession, SyncClient
from enforcer.store.feed import current_epoch
from tests.api.conftest import SECRET, running, settings
from tests.api.helpers import apply_indicators, block
from tests.api.restore import backup, restore
from tests.shim.test_sync import eventually


class Device:
    """A sync client as the shim builds it, from its state directory (cache included)."""

    def __init__(self, url: str, state: Path) -> None:
        self.cache = IndicatorCache(state / "indicators.sqlite")
        self.matcher = Matcher()
        held = SyncClient.load_cache(self.cache, (), self.matcher)
        self.session = ServerSession(url, SECRET, identity.load_identity(state, ()), state)
        self.client = SyncClient(
            self.session, self.matcher, held, self.cache, wait=5, backoff=Backoff(0.05, 0.5)
        )
        self.task = asyncio.create_task(self.client.run())

    def action(self, name: str) -> Action | None:
        return self.matcher.verdict(name).action

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.session.aclose()
        self.cache.close()


@pytest.fixture
def server(engine: Engine) -> Iterator[str]:
    with running(create_app(settings(), engine, ApiLimits(poll_interval=0.1))) as url:
        yield url


def store_state(engine: Engine) -> tuple[int, str]:
    with engine.connect() as conn:
        return current_epoch(conn)


@pytest.mark.timeout(60)
def test_a_long_polling_shim_drops_what_the_restore_undid(
    server: str, engine: Engine, tmp_path: Path
) -> None:
    apply_indicators(engine, [block("a.example")])

    async def scenario() -> None:
        device = Device(server, tmp_path / "state")
        try:
            await eventually(lambda: device.action("a.example") is Action.BLOCK)
            copy = await asyncio.to_thread(backup, engine)
            await asyncio.to_thread(
                apply_indicators, engine, [block("a.example"), block("undone.example")]
            )
            await eventually(lambda: device.action("undone.example") is Action.BLOCK)
            await asyncio.to_thread(restore, engine, copy)
            await eventually(lambda: device.action("undone.example") is None)
            await asyncio.to_thread(
                apply_indicators, engine, [block("a.example"), block("new.example")]
            )
            await eventually(lambda: device.action("new.example") is Action.BLOCK)
            assert device.action("undone.example") is None
            assert (device.cache.revision, device.cache.epoch) == store_state(engine)
            assert {i.value for i in device.cache.indicators()} == {"a.example", "new.example"}
        finally:
            await device.close()

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_a_shim_restarted_from_its_cache_takes_the_restored_store_s_set(
    server: str, engine: Engine, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    apply_indicators(engine, [block("a.example")])

    async def synced_then_stopped() -> str | None:
        device = Device(server, state)
        try:
            await eventually(lambda: device.action("a.example") is Action.BLOCK)
            copy = await asyncio.to_thread(backup, engine)
            await asyncio.to_thread(
                apply_indicators, engine, [block("a.example"), block("undone.example")]
            )
            await eventually(lambda: device.action("undone.example") is Action.BLOCK)
        finally:
            await device.close()
        # While the shim is down, the store is restored and reaches the same revision again.
        revision = store_state(engine)[0]
        restore(engine, copy)
        apply_indicators(engine, [block("a.example"), block("new.example")])
        assert store_state(engine)[0] == revision
        return IndicatorCache(state / "indicators.sqlite").epoch

    old_epoch = asyncio.run(synced_then_stopped())

    async def restarted() -> None:
        device = Device(server, state)
        try:
            assert device.action("undone.example") is Action.BLOCK, "the cache, before syncing"
            await eventually(lambda: device.action("new.example") is Action.BLOCK)
            assert device.action("undone.example") is None
            assert device.cache.epoch != old_epoch
            assert (device.cache.revision, device.cache.epoch) == store_state(engine)
        finally:
            await device.close()

    asyncio.run(restarted())
