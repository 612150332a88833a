"""Event upload at the contract's limits: a full batch of 5,000 events, and one more."""

from __future__ import annotations

import time

from enforcer.store.events import count_events
from tests.api.conftest import Api, bearer
from tests.api.test_events import URL, event


def test_a_full_batch_is_stored_and_one_more_event_is_413(api: Api) -> None:
    token = api.enroll("laptop-1")
    events = [event(i) for i in range(5_000)]
    start = time.monotonic()
    response = api.client.post(
        URL, headers=bearer(token), json={"batchId": "full", "events": events}
    )
    elapsed = time.monotonic() - start
    assert response.status_code == 200, response.text
    assert response.json() == {
        "accepted": ["full"],
        "duplicate": False,
        "count": 5_000,
        "refused": [],
    }
    assert elapsed < 10
    over = api.client.post(
        URL, headers=bearer(token), json={"batchId": "over", "events": [*events, event()]}
    )
    assert over.status_code == 413
    with api.engine.connect() as conn:
        assert count_events(conn) == 5_000
