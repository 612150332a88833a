"""Issue 14.5: a large change reaches every device at once, and sync does not collapse.

Many devices long-poll a real uvicorn server whose store has a small connection pool (5, no
overflow, 5 s to get a connection). One change adds 30,000 indicators, more than a delta
carries, so every device needs a snapshot. Before, each device streamed its own snapshot from
a server-side cursor and held a connection for its whole download: the devices beyond the
fifth waited for a connection, gave up, and got a 200 cut short after its first bytes. Now the
snapshot is rendered once per scope set and every download comes from memory with its length.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from enforcer.api import ApiLimits, create_app
from enforcer.models import Indicator
from enforcer.pipeline.metrics import REGISTRY
from enforcer.store.db import make_engine
from enforcer.store.devices import enroll_device
from tests.api.conftest import running, settings
from tests.api.helpers import apply_indicators, block
from tests.api.test_sync import SYNC

pytestmark = pytest.mark.slow

PLAIN, ENGINEERING = 40, 16
"""Devices for all-devices indicators only, and devices in the engineering group."""
BIG = 15_000
DELTA_LIMIT = 5_000


@pytest.fixture
def small_pool(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url, pool_size=5, max_overflow=0, pool_timeout=5)
    yield engine
    engine.dispose()


def renders(kind: str) -> float:
    return REGISTRY.get_sample_value("enforcer_sync_renders_total", {"kind": kind}) or 0.0


def entries(body: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(e["scope"], e["indicatorValue"], e["action"]) for e in body["upserts"]}


def expected(indicators: list[Indicator], groups: list[str]) -> set[tuple[str, str, str]]:
    return {(i.scope, i.value, i.action.value) for i in indicators if i.scope in ("", *groups)}


async def fetch(
    client: httpx.AsyncClient, token: str, params: dict[str, Any], *, identity: bool
) -> tuple[httpx.Response, bytes]:
    """One sync answer read to its end (304s of a long-poll are asked again)."""
    headers = {"Authorization": f"Bearer {token}"}
    if identity:
        headers["Accept-Encoding"] = "identity"
    while True:
        async with client.stream("GET", SYNC, params=params, headers=headers) as response:
            body = await response.aread()
        if response.status_code != 304:
            return response, body


def check(
    outcome: tuple[httpx.Response, bytes] | BaseException,
    revision: int,
    want: set[tuple[str, str, str]],
    *,
    snapshot: bool,
) -> None:
    assert not isinstance(outcome, BaseException), f"a device got no answer: {outcome!r}"
    response, content = outcome
    assert response.status_code == 200, content[:300]
    # The whole answer, as long as it said: never a 200 cut short.
    assert int(response.headers["content-length"]) == response.num_bytes_downloaded
    body = json.loads(content)
    assert (body["revision"], body["snapshot"]) == (revision, snapshot)
    assert entries(body) == want


def test_a_large_change_reaches_every_device_through_a_small_pool(small_pool: Engine) -> None:
    engine = small_pool
    seed = [block(f"seed{i:03d}.example") for i in range(100)]
    first = apply_indicators(engine, seed)
    limits = ApiLimits(poll_interval=0.1, max_delta_changes=DELTA_LIMIT)
    groups = [[]] * PLAIN + [["engineering"]] * ENGINEERING
    big = seed + [
        block(f"host{i:05d}.example", scope="engineering" if i % 10 == 0 else "", app="bulk")
        for i in range(BIG)
    ]
    with (
        running(create_app(settings(), engine, limits)) as url,
        httpx.Client(base_url=url, timeout=30) as admin,
    ):
        # Enrolled in the store (the API's enrolment is tested elsewhere), groups decided.
        tokens = [
            enroll_device(engine, device_id=f"dev-{n:03d}", hostname=f"pc{n}", os="Linux",
                          user="u", local_ips=["10.0.0.5"], groups=wanted)[1]
            for n, wanted in enumerate(groups)
        ]  # fmt: skip
        epoch = admin.get(SYNC, headers={"Authorization": f"Bearer {tokens[0]}"}).json()["epoch"]
        snapshots_before = renders("snapshot")

        async def fan_out() -> list[Any]:
            limits = httpx.Limits(max_connections=len(tokens) + 5)
            async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
                waiting = {"since": first, "epoch": epoch, "wait": 30}
                devices = [
                    asyncio.create_task(fetch(client, t, waiting, identity=n % 2 == 1))
                    for n, t in enumerate(tokens)
                ]
                while (REGISTRY.get_sample_value("enforcer_sync_clients_waiting") or 0) < len(
                    tokens
                ):
                    await asyncio.sleep(0.05)
                await asyncio.to_thread(apply_indicators, engine, big)
                return await asyncio.gather(*devices, return_exceptions=True)

        outcomes = asyncio.run(fan_out())
        second = first + 1
        for outcome, wanted in zip(outcomes, groups, strict=True):
            check(outcome, second, expected(big, wanted), snapshot=True)
        # Once per scope set, however many devices asked.
        assert renders("snapshot") - snapshots_before == 2
        # A device that asks later (not waiting) gets the same rendering.
        late = admin.get(
            SYNC, params={"since": first}, headers={"Authorization": f"Bearer {tokens[1]}"}
        )
        assert late.status_code == 200 and len(late.json()["upserts"]) == len(expected(big, []))
        assert renders("snapshot") - snapshots_before == 2

        # A large delta (below the snapshot limit), asked by every device at once without
        # waiting, as after a server restart: one store read and one rendering per question.
        changed = big[:-1_500] + [block(f"new{i:04d}.example") for i in range(2_000)]
        third = apply_indicators(engine, changed)
        deltas_before = renders("delta")

        async def reconnect() -> list[Any]:
            limits = httpx.Limits(max_connections=len(tokens) + 5)
            async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
                asked = {"since": second, "epoch": outcomes[0][0].json()["epoch"]}
                return await asyncio.gather(
                    *(fetch(client, t, asked, identity=n % 2 == 0) for n, t in enumerate(tokens)),
                    return_exceptions=True,
                )

        answers = asyncio.run(reconnect())
        for outcome, wanted in zip(answers, groups, strict=True):
            new = expected(changed, wanted) - expected(big, wanted)
            check(outcome, third, new, snapshot=False)
            assert not isinstance(outcome, BaseException)
            removed = {(r["scope"], r["indicatorValue"]) for r in json.loads(outcome[1])["removes"]}
            assert removed == {
                (s, v) for s, v, _ in expected(big, wanted) - expected(changed, wanted)
            }
        assert renders("delta") - deltas_before == 2
