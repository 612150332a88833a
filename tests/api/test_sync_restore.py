"""Sync after the store is restored from a backup: revision numbers are issued again.

A device synced to revision N; the store is restored to a copy taken at an older revision and
then reaches N again with other changes. The number alone says the device is up to date; the
epoch says it holds another history, so it must get a snapshot of the store's new set.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import httpx

from enforcer.pipeline.metrics import REGISTRY
from enforcer.store.devices import list_devices
from tests.api.conftest import Api, bearer
from tests.api.helpers import apply_indicators, block
from tests.api.restore import backup, restore

SYNC = "/api/v1/sync"


def domains(body: dict[str, Any]) -> set[str]:
    return {u["indicatorValue"] for u in body["upserts"]}


def cursor(body: dict[str, Any]) -> dict[str, Any]:
    return {"since": body["revision"], "epoch": body["epoch"]}


def applied_revision(api: Api, device_id: str) -> int | None:
    with api.engine.connect() as conn:
        rows = list_devices(conn, stale_after=dt.timedelta(minutes=10))
    return next(r.device.applied_revision for r in rows if r.device.device_id == device_id)


def test_a_device_ahead_of_a_restored_store_gets_the_new_set(api: Api) -> None:
    token = api.enroll("laptop-1")
    apply_indicators(api.engine, [block("a.example")])
    copy = backup(api.engine)
    rev = apply_indicators(api.engine, [block("a.example"), block("undone.example")])
    held = api.client.get(SYNC, headers=bearer(token)).json()
    assert held["revision"] == rev and domains(held) == {"a.example", "undone.example"}
    etag = api.client.get(SYNC, params=cursor(held), headers=bearer(token)).headers["ETag"]

    restore(api.engine, copy)
    again = apply_indicators(api.engine, [block("a.example"), block("new.example")])
    assert again == rev, "the restored store issues the device's revision number again"

    # At once, and with a long-poll or the old ETag too: a snapshot of the new set.
    for params, headers in (
        (cursor(held), {}),
        ({**cursor(held), "wait": 5}, {}),
        (cursor(held), {"If-None-Match": etag}),
    ):
        got = api.client.get(SYNC, params=params, headers={**bearer(token), **headers})
        assert got.status_code == 200, (params, headers, got.status_code)
        body = got.json()
        assert body["snapshot"] is True and body["revision"] == rev
        assert body["epoch"] != held["epoch"]
        assert domains(body) == {"a.example", "new.example"}
    # The old cursor is not what the device holds of this store: not recorded as applied.
    assert applied_revision(api, "laptop-1") != rev

    # From the new cursor, deltas as usual, and it is recorded.
    later = apply_indicators(api.engine, [block("new.example")])
    delta = api.client.get(SYNC, params=cursor(body), headers=bearer(token)).json()
    assert delta["snapshot"] is False and delta["revision"] == later
    assert delta["removes"] == [{"indicatorValue": "a.example", "scope": ""}]
    assert applied_revision(api, "laptop-1") == rev


def test_a_long_poll_at_a_revision_the_restore_undid_is_answered(api: Api) -> None:
    token = api.enroll("laptop-1")
    apply_indicators(api.engine, [block("a.example")])
    copy = backup(api.engine)
    apply_indicators(api.engine, [block("a.example"), block("undone.example")])
    held = api.client.get(SYNC, headers=bearer(token)).json()

    answers: list[httpx.Response] = []

    def poll() -> None:
        with httpx.Client(base_url=api.url, timeout=30) as client:
            answers.append(
                client.get(SYNC, params={**cursor(held), "wait": 20}, headers=bearer(token))
            )

    waiting = threading.Thread(target=poll)
    waiting.start()
    deadline = time.monotonic() + 5
    while not REGISTRY.get_sample_value("enforcer_sync_clients_waiting"):
        assert time.monotonic() < deadline, "the long-poll did not start waiting"
        time.sleep(0.01)
    restore(api.engine, copy)
    waiting.join(10)
    assert not waiting.is_alive(), "the long-poll still waits for a revision the device has"
    body = answers[0].json()
    assert body["snapshot"] is True and domains(body) == {"a.example"}
    assert body["revision"] == held["revision"] - 1


def test_the_same_history_restored_keeps_deltas(api: Api) -> None:
    """A restore that loses nothing the device holds costs it nothing."""
    token = api.enroll("laptop-1")
    apply_indicators(api.engine, [block("a.example")])
    held = api.client.get(SYNC, headers=bearer(token)).json()
    copy = backup(api.engine)
    restore(api.engine, copy)
    later = apply_indicators(api.engine, [block("a.example"), block("b.example")])
    delta = api.client.get(SYNC, params=cursor(held), headers=bearer(token)).json()
    assert delta["snapshot"] is False and delta["revision"] == later
    assert domains(delta) == {"b.example"}
