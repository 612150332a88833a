"""Device events reach discovery exactly once, and are never pruned before, whatever order their
batches commit in (issue 14, item 4), on a store migrated with a backlog too."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, event, func, select, text

from enforcer.catalog import load_catalog
from enforcer.discovery.continuous import process_events
from enforcer.store.db import make_engine
from enforcer.store.events import EventRecord, count_events, prune_events, store_batch
from enforcer.store.migrate import _config
from enforcer.store.tables.discovery import DEV_DAY

OLD = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
CUTOFF = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)


def _events(count: int, time: dt.datetime = OLD) -> list[EventRecord]:
    one = EventRecord(
        time, "pc", "alice", "10.0.0.5", "www.dropbox.com", "1.2.3.4", 443, 10, 20, "allowed",
        "", "", "proxy",
    )  # fmt: skip
    return [one] * count


def _counted(engine: Engine) -> int:
    """Events counted in the discovery rollups (each event is one transaction of its device)."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.sum(DEV_DAY.c.transactions))).scalar() or 0)


def _drain(engine: Engine) -> int:
    catalog = load_catalog()
    total = 0
    while done := process_events(engine, catalog):
        total += done
    return total


def test_a_batch_with_lower_ids_that_commits_after_a_rollup_is_counted_once_and_kept(
    engine: Engine, db_url: str
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite commits one writer at a time, so ids follow commits")
    slow = make_engine(db_url)
    reached_commit, release = threading.Event(), threading.Event()

    @event.listens_for(slow, "commit")
    def hold_the_commit(_conn: Any) -> None:
        # Its rows (the lower ids) are written; the commit waits until the test lets it go.
        reached_commit.set()
        assert release.wait(30)

    writer = threading.Thread(
        target=store_batch,
        kwargs={"engine": slow, "device_id": "dev-slow", "batch_id": "b1", "events": _events(3)},
    )
    writer.start()
    try:
        assert reached_commit.wait(30)
        store_batch(engine, device_id="dev-fast", batch_id="b1", events=_events(2))
        with engine.connect() as conn:
            first_fast = conn.execute(text("SELECT min(id) FROM network_event")).scalar_one()
        catalog = load_catalog()
        assert process_events(engine, catalog) == 2  # the committed batch, not the held one
        prune_events(engine, CUTOFF)
    finally:
        release.set()
        writer.join(30)
    slow.dispose()
    with engine.connect() as conn:
        # The held batch took the lower ids and committed last; the other one is pruned.
        left = conn.execute(text("SELECT device_id, max(id) FROM network_event GROUP BY 1")).all()
    assert [(device, last < first_fast) for device, last in left] == [("dev-slow", True)]
    assert prune_events(engine, CUTOFF) == 0  # the late batch is not rolled up yet: kept
    with engine.connect() as conn:
        assert count_events(conn) == 3
    assert _drain(engine) == 3
    assert _counted(engine) == 5
    assert _drain(engine) == 0 and _counted(engine) == 5
    assert prune_events(engine, CUTOFF) == 3


def test_concurrent_writers_looping_rollups_and_pruning_count_every_event_once(
    engine: Engine, db_url: str
) -> None:
    writers, batches, size = 4, 40, 100
    done = threading.Event()
    catalog = load_catalog()
    errors: list[BaseException] = []
    pruned = 0
    lock = threading.Lock()

    def write(device: str) -> None:
        own = make_engine(db_url)
        try:
            for n in range(batches):
                store_batch(own, device_id=device, batch_id=f"b{n}", events=_events(size))
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            own.dispose()

    def roll_up_and_prune() -> None:
        nonlocal pruned
        try:
            while not done.is_set():
                process_events(engine, catalog, batch=100)
                count = prune_events(engine, CUTOFF)
                with lock:
                    pruned += count
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"dev-{w}",)) for w in range(writers)]
    # Two roll-ups at once, as the daemon's job and `enforcer discovery process` can be.
    rollers = [threading.Thread(target=roll_up_and_prune) for _ in range(2)]
    for thread in rollers + threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    done.set()
    for thread in rollers:
        thread.join(120)
    assert errors == []
    _drain(engine)
    pruned += prune_events(engine, CUTOFF)
    stored = writers * batches * size
    assert _counted(engine) == stored
    with engine.connect() as conn:
        assert count_events(conn) == 0
    assert pruned == stored


def test_events_stored_after_everything_was_pruned_are_counted(engine: Engine) -> None:
    # SQLite gives a new row the highest id + 1: with every event pruned, ids start again at 1.
    store_batch(engine, device_id="dev-1", batch_id="b1", events=_events(2))
    assert _drain(engine) == 2
    assert prune_events(engine, CUTOFF) == 2
    store_batch(engine, device_id="dev-1", batch_id="b2", events=_events(1))
    assert _drain(engine) == 1
    assert _counted(engine) == 3


def test_a_store_migrated_with_a_backlog_rolls_up_only_what_the_old_cursor_had_not(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(_config(engine), "0007")
    insert_event = text(
        "INSERT INTO network_event (id, device_id, time, hostname, user, local_ip, domain,"
        " domain_rev, dest_ip, dest_port, bytes_up, bytes_down, action, indicator, app_id,"
        " source, pid, process_name, process_path) VALUES (:id, 'dev-1', :time, '', 'alice',"
        " '', 'www.dropbox.com', 'com.dropbox.www', '', 443, 1, 2, 'allowed', '', '', 'dns',"
        " 0, '', '')"
    )
    with engine.begin() as conn:
        # 25,000 events; the old cursor had rolled up the first 4,000.
        conn.execute(insert_event, [{"id": i, "time": OLD} for i in range(1, 25_001)])
        conn.execute(
            text(
                "INSERT INTO discovery_cursor (name, last_event_id) VALUES ('network-events', 4000)"
            )
        )
    command.upgrade(_config(engine), "head")
    assert prune_events(engine, CUTOFF) == 4000  # rolled up before: prunable; the rest is kept
    assert _drain(engine) == 21_000
    assert _counted(engine) == 21_000
    assert prune_events(engine, CUTOFF) == 21_000
    engine.dispose()
