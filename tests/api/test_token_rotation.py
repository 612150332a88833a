"""Device tokens expire and are replaced over sync before they do (on SQLite and PostgreSQL).

The age of a token is set in the store (its ``token_issued_at``) instead of waiting for it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, update

from enforcer.store.devices import hash_token
from enforcer.store.tables.devices import DEVICE
from tests.api.conftest import Api, bearer

DAY = dt.timedelta(days=1)
"""The default lifetime is 30 days: a replacement is handed out past 15."""


def age_token(engine: Engine, device_id: str, age: dt.timedelta) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(DEVICE)
            .where(DEVICE.c.device_id == device_id)
            .values(token_issued_at=dt.datetime.now(dt.UTC) - age)
        )


def stored_hashes(engine: Engine, device_id: str) -> tuple[str, str | None]:
    with engine.connect() as conn:
        row = conn.execute(DEVICE.select().where(DEVICE.c.device_id == device_id)).one()
    return row.token_hash, row.next_token_hash


def test_an_expired_device_token_is_refused_with_a_clear_401(api: Api) -> None:
    token = api.enroll("laptop-1")
    age_token(api.engine, "laptop-1", 31 * DAY)
    for _ in range(2):  # a refused token is not remembered as a device's
        refused = api.client.get("/api/v1/sync", headers=bearer(token))
        assert refused.status_code == 401
        assert refused.json()["detail"] == "device token expired; enrol again"
        assert "expired" in refused.headers["WWW-Authenticate"]
    again = api.enroll("laptop-1")
    assert api.client.get("/api/v1/sync", headers=bearer(again)).status_code == 200


def test_a_young_token_gets_no_replacement(api: Api) -> None:
    token = api.enroll("laptop-1")
    answer = api.client.get("/api/v1/sync", headers=bearer(token))
    assert answer.status_code == 200
    assert "Enforcer-Device-Token" not in answer.headers
    assert stored_hashes(api.engine, "laptop-1")[1] is None


def test_past_half_its_lifetime_a_token_is_replaced_over_sync(api: Api) -> None:
    old = api.enroll("laptop-1")
    age_token(api.engine, "laptop-1", 16 * DAY)
    answer = api.client.get("/api/v1/sync", headers=bearer(old))
    assert answer.status_code == 200
    new = answer.headers["Enforcer-Device-Token"]
    assert len(new) >= 40 and new != old
    # Only its hash is stored, beside the current token's.
    assert stored_hashes(api.engine, "laptop-1") == (hash_token(old), hash_token(new))

    # Until the new token is used, the old one keeps working (an answer lost on the way costs
    # nothing), and the next syncs of this process hand out no second one.
    again = api.client.get("/api/v1/sync", headers=bearer(old))
    assert again.status_code == 200 and "Enforcer-Device-Token" not in again.headers

    # Its first use makes it the token, valid for a whole lifetime; the old one stops working.
    used = api.client.get("/api/v1/sync", headers=bearer(new))
    assert used.status_code == 200 and "Enforcer-Device-Token" not in used.headers
    assert stored_hashes(api.engine, "laptop-1") == (hash_token(new), None)
    stale = api.client.get("/api/v1/sync", headers=bearer(old))
    assert stale.status_code == 401
    assert stale.json()["detail"] == "unknown device token; enrol again"
    events = api.client.post(
        "/api/v1/events", headers=bearer(new), json={"batchId": "b1", "events": []}
    )
    assert events.status_code != 401


def test_a_long_poll_answered_304_also_hands_out_the_replacement(api: Api) -> None:
    token = api.enroll("laptop-1")
    age_token(api.engine, "laptop-1", 20 * DAY)
    # An empty store is at revision 0: a device there is up to date, and waits.
    waited = api.client.get("/api/v1/sync", headers=bearer(token), params={"since": 0, "wait": 0.2})
    assert waited.status_code == 304
    assert waited.headers["Enforcer-Device-Token"]


def test_a_replacement_expires_with_the_token_it_replaces(api: Api) -> None:
    old = api.enroll("laptop-1")
    age_token(api.engine, "laptop-1", 16 * DAY)
    new = api.client.get("/api/v1/sync", headers=bearer(old)).headers["Enforcer-Device-Token"]
    age_token(api.engine, "laptop-1", 31 * DAY)
    refused = api.client.get("/api/v1/sync", headers=bearer(new))
    assert refused.status_code == 401
    assert refused.json()["detail"] == "device token expired; enrol again"


def test_re_enrolling_drops_a_handed_out_replacement(api: Api) -> None:
    old = api.enroll("laptop-1")
    age_token(api.engine, "laptop-1", 16 * DAY)
    new = api.client.get("/api/v1/sync", headers=bearer(old)).headers["Enforcer-Device-Token"]
    fresh = api.enroll("laptop-1")
    assert api.client.get("/api/v1/sync", headers=bearer(new)).status_code == 401
    assert api.client.get("/api/v1/sync", headers=bearer(fresh)).status_code == 200
