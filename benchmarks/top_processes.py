"""Top processes over many raw events: an app's over 30 days and a machine's over 7 days.

Fills network_event with `--events` events (1,000 devices, 200 apps with a skewed popularity:
app-0 gets about a fifth of the traffic, 30 days, 40 process names), gathers statistics, then
times `enforcer.store.processes.top_processes` for a popular app, a rare app and one device,
against the peer: the same GROUP BY forced through a full scan of the table (an unindexed
predicate), measured in the same run. Best of `--repeat`.

    python benchmarks/top_processes.py --events 1000000
    python benchmarks/top_processes.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
from pathlib import Path

from _store import fresh_store
from sqlalchemy import Engine, func, insert, select, text

from enforcer.store.processes import top_processes
from enforcer.store.tables.devices import EVENT

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def fill(engine: Engine, count: int) -> None:
    rnd = random.Random(7)
    rows = []
    with engine.begin() as conn:
        for _ in range(count):
            app = 0 if rnd.random() < 0.2 else rnd.randrange(1, 200)
            rows.append(
                {
                    "device_id": f"dev-{rnd.randrange(1000)}",
                    "time": NOW - dt.timedelta(seconds=rnd.uniform(0, 30 * 86400)),
                    "domain": f"d{app}.example",
                    "app_id": f"app-{app}",
                    "action": "allowed",
                    "source": "proxy",
                    "user": f"u{rnd.randrange(300)}",
                    "bytes_up": rnd.randrange(100, 10_000),
                    "bytes_down": rnd.randrange(1_000, 100_000),
                    "process_name": f"p{rnd.randrange(40)}",
                    "process_path": "/usr/bin/p",
                }
            )
            if len(rows) == 20_000:
                conn.execute(insert(EVENT), rows)
                rows = []
        if rows:
            conn.execute(insert(EVENT), rows)
        conn.execute(text("ANALYZE"))


def best(run: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def full_scan(engine: Engine, start: dt.datetime, app: str) -> None:
    e = EVENT.c
    # `|| ''` hides the column from every index: the plan scans the table.
    query = (
        select(e.process_name, func.count())
        .where((e.app_id + "") == app, e.time >= start)
        .group_by(e.process_name, e.process_path)
    )
    with engine.connect() as conn:
        conn.execute(query).all()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_store(args.database_url, Path(tmp)) as (_, engine),
    ):
        started = time.perf_counter()
        fill(engine, args.events)
        print(
            f"{engine.dialect.name}: {args.events:,} events stored in {time.perf_counter() - started:.0f} s"
        )
        month, week = NOW - dt.timedelta(days=30), NOW - dt.timedelta(days=7)
        for label, kwargs, start in (
            ("popular app (app-0, ~20% of events), 30 days", {"app_id": "app-0"}, month),
            ("rare app (app-7, ~0.4%), 30 days", {"app_id": "app-7"}, month),
            ("one machine (dev-3), 7 days", {"device_ids": ["dev-3"]}, week),
        ):

            def query(kwargs: dict[str, object] = kwargs, start: dt.datetime = start) -> None:
                with engine.connect() as conn:
                    top_processes(conn, start=start, end=NOW, **kwargs)  # type: ignore[arg-type]

            print(f"  {label}: {best(query, args.repeat) * 1000:.0f} ms")
        scan = best(lambda: full_scan(engine, month, "app-7"), args.repeat)

        def indexed() -> None:
            with engine.connect() as conn:
                top_processes(conn, start=month, end=NOW, app_id="app-7")

        rare = best(indexed, args.repeat)
        print(
            f"  peer, the rare app's GROUP BY by full scan: {scan * 1000:.0f} ms "
            f"(indexed/scan = {rare / scan:.3f}x)"
        )


if __name__ == "__main__":
    main()
