"""The dashboard's warned series counts the warnings users met (warned and bypassed events),
not only the alerts of indicators that raise them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine

from enforcer.console.pages.dashboard import _attempts
from enforcer.discovery.reports import day_range
from enforcer.store.events import EventRecord, store_batch, warned_per_day


def test_warned_and_bypassed_events_are_counted_per_day(engine: Engine) -> None:
    now = dt.datetime.now(dt.UTC).replace(hour=12)
    yesterday = now - dt.timedelta(days=1)

    def event(when: dt.datetime, action: str) -> EventRecord:
        return EventRecord(when, "pc-1", "alice", "10.0.0.5", "wetransfer.com", "", 443, 0, 0,
                           action, "wetransfer.com", "wetransfer", "proxy")  # fmt: skip

    events = [event(now, "warned"), event(now, "bypassed"), event(now, "allowed"),
              event(yesterday, "warned")]  # fmt: skip
    store_batch(engine, device_id="dev-1", batch_id="b", events=events)
    with engine.connect() as conn:
        per_day = warned_per_day(conn, now - dt.timedelta(days=7))
        _blocked, warned, _labels = _attempts(conn, *day_range(7))
    assert per_day == {now.date().isoformat(): 2, yesterday.date().isoformat(): 1}
    assert sum(warned) == 3 and warned[-1] == 2
