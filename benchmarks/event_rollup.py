"""Device events into discovery: the store's ingest rate, the roll-up's rate, and events lost.

Devices' event uploads end in `store_batch` (one transaction per batch); the daemon's
discovery job drains them with `process_events` into the rollup tables. Two phases, each on a
fresh store:

(1) backlog: `--writers` threads store `--events` events in batches of `--batch-size` (ingest
    events/s), then one loop of `process_events` drains them (roll-up events/s);
(2) concurrent: the same writers while a roll-up thread loops as the daemon does (ingest
    events/s with the roll-up running; a failed run is counted and the loop goes on), then a
    final drain. It prints how many stored events the rollups did not count exactly once
    (stored minus counted: lost if positive, doubled if negative).

    python benchmarks/event_rollup.py                               # SQLite in a temp dir
    python benchmarks/event_rollup.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Each phase runs `--repeat` times; the best rate is the figure, the median beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import threading
import time
from pathlib import Path

from _store import fresh_store
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from enforcer.catalog import load_catalog
from enforcer.discovery.continuous import process_events
from enforcer.store.events import EventRecord, store_batch
from enforcer.store.tables.discovery import DEV_DAY

DOMAINS = (
    "www.dropbox.com", "g.api.mega.nz", "chat.openai.com", "drive.google.com", "pastebin.com",
    "unknown-site.example", "cdn.unknown.example", "outlook.office365.com",
)  # fmt: skip


def _batches(writer: int, events: int, size: int) -> list[tuple[str, list[EventRecord]]]:
    now = dt.datetime.now(dt.UTC)
    batches = []
    for start in range(0, events, size):
        batch = [_event(now, writer, i) for i in range(start, min(start + size, events))]
        batches.append((f"b{start}", batch))
    return batches


def _event(now: dt.datetime, writer: int, i: int) -> EventRecord:
    return EventRecord(
        now, f"pc-{writer}", f"user{i % 7}", "10.0.0.5", DOMAINS[i % len(DOMAINS)], "1.2.3.4",
        443, 100, 2000, "allowed", "", "", "proxy",
    )  # fmt: skip


def _write(engine: Engine, writers: int, events: int, size: int) -> float:
    """Store `events` events from `writers` threads at once; returns the seconds taken."""
    work = [_batches(w, events // writers, size) for w in range(writers)]
    threads = [
        threading.Thread(target=_store_all, args=(engine, f"dev-{w}", work[w]))
        for w in range(writers)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def _store_all(engine: Engine, device: str, batches: list[tuple[str, list[EventRecord]]]) -> None:
    for batch_id, batch in batches:
        store_batch(engine, device_id=device, batch_id=batch_id, events=batch)


def _drain(engine: Engine) -> int:
    catalog = load_catalog()
    total = 0
    while done := process_events(engine, catalog):
        total += done
    return total


def _counted(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.sum(DEV_DAY.c.transactions))).scalar() or 0)


def backlog(url: str, work: Path, args: argparse.Namespace, run: int) -> tuple[float, float]:
    """Ingest events/s, then roll-up events/s over the backlog."""
    with fresh_store(url, work, f"backlog{run}") as (_, engine):
        stored = (args.events // args.writers) * args.writers
        wrote = _write(engine, args.writers, args.events, args.batch_size)
        started = time.perf_counter()
        rolled = _drain(engine)
        took = time.perf_counter() - started
        assert rolled == stored, (rolled, stored)
        return stored / wrote, stored / took


def concurrent(
    url: str, work: Path, args: argparse.Namespace, run: int
) -> tuple[float, int, int, int]:
    """Ingest events/s with a roll-up looping beside it: (rate, stored, counted in the rollups,
    roll-up runs that failed)."""
    with fresh_store(url, work, f"concurrent{run}") as (_, engine):
        stop = threading.Event()
        catalog = load_catalog()

        failed = 0

        def rollup_loop() -> None:
            # As the daemon's job: a failed run is logged there and the next one tries again.
            nonlocal failed
            while not stop.is_set():
                try:
                    if not process_events(engine, catalog):
                        time.sleep(0.01)
                except SQLAlchemyError:
                    failed += 1

        roller = threading.Thread(target=rollup_loop)
        roller.start()
        stored = (args.events // args.writers) * args.writers
        try:
            wrote = _write(engine, args.writers, args.events, args.batch_size)
        finally:
            stop.set()
            roller.join()
        _drain(engine)
        return stored / wrote, stored, _counted(engine), failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="", help="default: SQLite in a temp dir")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    backend = "PostgreSQL" if args.database_url.startswith("postgresql") else "SQLite"
    print(
        f"{backend}: {args.events:,} events, {args.writers} writers, batches of {args.batch_size}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ingest, rollup, beside, wrong, failures = [], [], [], [], []
        for run in range(args.repeat):
            rates = backlog(args.database_url, work, args, run)
            ingest.append(rates[0])
            rollup.append(rates[1])
            rate, stored, counted, failed = concurrent(args.database_url, work, args, run)
            beside.append(rate)
            wrong.append(stored - counted)
            failures.append(failed)
    for name, figures in (
        ("ingest (store_batch)", ingest),
        ("roll-up (process_events) over the backlog", rollup),
        ("ingest with the roll-up looping beside it", beside),
    ):
        print(f"{name}: {max(figures):,.0f} events/s (median {statistics.median(figures):,.0f})")
    print(f"events not counted exactly once, per run: {wrong} (stored minus counted)")
    print(f"roll-up runs that failed beside the writers, per run: {failures}")


if __name__ == "__main__":
    main()
