"""The shim keeps the replacement token a sync answer hands it, and enrols again once its
token has expired (against the real server; the token's age is set in the server's store)."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import httpx
import pytest
import structlog
from sqlalchemy import Engine, update

from enforcer.shim.report import identity
from enforcer.store.tables.devices import DEVICE
from tests.shim.test_sync import Device, LiveServer, live_server, run

__all__ = ["live_server"]  # the fixture, used by name

DAY = dt.timedelta(days=1)


def age_tokens(engine: Engine, age: dt.timedelta) -> None:
    with engine.begin() as conn:
        conn.execute(update(DEVICE).values(token_issued_at=dt.datetime.now(dt.UTC) - age))


def sync_status(url: str, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{url}/api/v1/sync", headers=headers, timeout=10).status_code


@pytest.fixture(autouse=True)
def no_token_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # The server remembers a token's device for 10 s; these tests age tokens in the store
    # under it, which time alone never does.
    monkeypatch.setattr("enforcer.api.deps.TOKEN_CACHE_SECONDS", 0.0)


@pytest.mark.timeout(60)
def test_the_shim_saves_and_uses_the_replacement_token(
    live_server: LiveServer, tmp_path: Path
) -> None:
    state = tmp_path / "state"

    async def scenario() -> tuple[str, str]:
        device = Device(live_server.url, state)
        try:
            await device.client.sync_once(0)
            old = identity.read_token(state)
            assert old is not None
            age_tokens(live_server.engine, 16 * DAY)
            await device.client.sync_once(0)  # the answer carries the replacement
            new = identity.read_token(state)
            assert new is not None and new != old
            assert stat.S_IMODE((state / identity.TOKEN_FILE).stat().st_mode) == 0o600
            await device.client.sync_once(0)  # made with the new token: the old one ends
            return old, new
        finally:
            await device.close()

    old, new = run(scenario())
    assert sync_status(live_server.url, old) == 401
    assert sync_status(live_server.url, new) == 200


@pytest.mark.timeout(60)
def test_an_expired_token_makes_the_shim_enrol_again_and_say_why(
    live_server: LiveServer, tmp_path: Path
) -> None:
    state = tmp_path / "state"

    async def scenario() -> None:
        device = Device(live_server.url, state)
        try:
            await device.client.sync_once(0)
            age_tokens(live_server.engine, 31 * DAY)
            await device.client.sync_once(0)
        finally:
            await device.close()

    with structlog.testing.capture_logs() as logged:
        run(scenario())
    events = [entry["event"] for entry in logged]
    assert "sync.token_expired" in events
    assert events.count("sync.enrolled") == 2
    token = identity.read_token(state)
    assert token is not None and sync_status(live_server.url, token) == 200
