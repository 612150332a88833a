"""`enforcer events list` over millions of stored network events, on SQLite and PostgreSQL.

Loads N events (default 10,000,000) that look like a month of a fleet's traffic: 2,000 devices,
one main user each (and a few shared service accounts), heavy-tailed processes, and names from
the v2fly community lists (about 34,000 registrable names, Zipf-distributed, the popular ones
with up to 30 subdomains), arriving in time order over 30 days. Then it times the searches the
command and ``GET /api/v1/events`` run (the store's `search_events` / `count_matching`, a page
of 100 newest first), median of several runs:

- a device's last hour (by hostname);
- the most visited domain (with its subdomains) over 30 days: a page and a count;
- a mid-popular (rank 41) and a rare (rank 20,001) domain over 30 days;
- a user over 30 days, a popular and a rare process over 30 days;
- a page 10,000 events deep (by cursor).

Beside the domain page it times the query a search without the reversed-name index would run
(``domain = X OR domain LIKE '%.X'``, sorted): the peer the index is measured against.

The load drops the event table's indexes, bulk-inserts (SQLite: executemany in transactions of
100,000; PostgreSQL: COPY), rebuilds the indexes and reports each phase's time. SQLite is
queried as the store leaves it (no ANALYZE, which Enforcer never runs); PostgreSQL after VACUUM
ANALYZE (what autovacuum does after a bulk load).

    .venv/bin/python benchmarks/events_list.py [--events N] [--runs 5] [--backend both]
      [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test] [--keep DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._store import fresh_store
from enforcer.store.event_search import (
    EventSearch,
    count_matching,
    search_events,
)
from enforcer.store.events import reversed_domain
from enforcer.store.tables.devices import EVENT

V2FLY = Path("/work/shared/data/v2fly-domain-list/data")
DEVICES = 2000
DAYS = 30
CHUNK = 100_000
HEAD = ["google.com", "microsoft.com", "googleapis.com", "office.com", "slack.com", "dropbox.com"]
LABELS = [
    "www",
    "api",
    "mail",
    "cdn",
    "login",
    "static",
    "img",
    "dl",
    "app",
    "docs",
    "m",
    "auth",
    "files",
    "content",
    "accounts",
    "update",
    "play",
    "drive",
    "chat",
    "video",
    "media",
    "assets",
    "edge",
    "news",
    "shop",
    "blog",
    "support",
    "status",
    "ws",
    "upload",
]
PROCESSES = [
    ("firefox", "/usr/lib/firefox/firefox"),
    ("chrome", "/opt/google/chrome/chrome"),
    ("slack", "/usr/lib/slack/slack"),
    ("teams", "/usr/share/teams/teams"),
    ("code", "/usr/share/code/code"),
    ("python3", "/usr/bin/python3"),
    ("curl", "/usr/bin/curl"),
    ("apt", "/usr/bin/apt"),
    ("git", "/usr/bin/git"),
    ("ssh", "/usr/bin/ssh"),
    ("dropbox", "/opt/dropbox/dropbox"),
    ("zoom", "/opt/zoom/zoom"),
    ("snapd", "/usr/lib/snapd/snapd"),
    ("systemd-resolved", "/usr/lib/systemd/systemd-resolved"),
    ("wget", "/usr/bin/wget"),
    ("rclone", "/usr/bin/rclone"),
]
ACTIONS = [("allowed", 90), ("audited", 5), ("blocked", 3), ("warned", 1), ("bypassed", 1)]
COLUMNS = [
    "device_id", "time", "hostname", "user", "local_ip", "domain", "domain_rev", "dest_ip",
    "dest_port", "bytes_up", "bytes_down", "action", "indicator", "app_id", "source", "pid",
    "process_name", "process_path",
]  # fmt: skip


def base_names() -> list[str]:
    """Registrable names of the v2fly lists, the popular head first, the rest shuffled."""
    names: set[str] = set()
    for path in V2FLY.iterdir():
        if not path.is_file() or path.name.isupper():
            continue
        for line in path.read_text(errors="replace").splitlines():
            value = line.split("#")[0].strip().removeprefix("domain:").removeprefix("full:")
            value = value.split()[0] if value else ""
            if (
                value.count(".") >= 1
                and ":" not in value
                and value.replace(".", "").replace("-", "").isalnum()
            ):
                names.add(value.lower())
    rest = sorted(names - set(HEAD))
    random.Random(7).shuffle(rest)
    return HEAD + rest


def names_with_weights(bases: list[str]) -> tuple[list[str], list[float]]:
    """Every full name and its share: Zipf (s=1) over the bases, split over their subdomains."""
    names: list[str] = []
    weights: list[float] = []
    for rank, base in enumerate(bases, start=1):
        count = max(1, int(30 / rank**0.5))
        share = 1.0 / rank
        subs = [base] + [f"{label}.{base}" for label in LABELS[: count - 1]]
        for i, name in enumerate(subs):
            names.append(name)
            weights.append(share / (i + 2))  # the bare name and www most, the tail less
    return names, weights


class Fleet:
    """Devices, users and processes of the generated fleet."""

    def __init__(self) -> None:
        self.devices = [(f"dev-{i:04d}", f"ws-{i:04d}.corp.example") for i in range(DEVICES)]
        self.users = [f"user{i:04d}" for i in range(DEVICES)]
        self.ips = [f"10.{i // 250}.{i % 250}.{10 + i % 200}" for i in range(DEVICES)]


def generate(n: int, end: dt.datetime) -> Iterator[list[tuple[Any, ...]]]:
    """Chunks of event rows (COLUMNS order, time as aware datetime), oldest first."""
    rng = random.Random(42)
    names, weights = names_with_weights(base_names())
    revs = {name: reversed_domain(name) for name in names}
    fleet = Fleet()
    device_weights = [1.0 / (1 + (i % 97)) ** 0.3 for i in range(DEVICES)]
    process_weights = [1.0 / (r + 1) ** 1.2 for r in range(len(PROCESSES))]
    start = end - dt.timedelta(days=DAYS)
    span = (end - start).total_seconds()
    done = 0
    while done < n:
        size = min(CHUNK, n - done)
        low = start + dt.timedelta(seconds=span * done / n)
        width = span * size / n
        times = sorted(low + dt.timedelta(seconds=rng.random() * width) for _ in range(size))
        picks = rng.choices(range(len(names)), weights, k=size)
        devs = rng.choices(range(DEVICES), device_weights, k=size)
        procs = rng.choices(range(len(PROCESSES)), process_weights, k=size)
        acts = rng.choices([a for a, _ in ACTIONS], [w for _, w in ACTIONS], k=size)
        rows = []
        for j in range(size):
            d = devs[j]
            name = names[picks[j]]
            proc, path = PROCESSES[procs[j]]
            user = fleet.users[d] if proc not in ("apt", "snapd", "systemd-resolved") else "root"
            action = acts[j]
            rows.append(
                (
                    fleet.devices[d][0],
                    times[j],
                    fleet.devices[d][1],
                    user,
                    fleet.ips[d],
                    name,
                    revs[name],
                    f"198.51.{picks[j] % 250}.{picks[j] % 199 + 1}",
                    443,
                    800 + j % 5000,
                    20_000 + (j * 7919) % 2_000_000,
                    action,
                    name if action in ("blocked", "warned", "bypassed") else "",
                    "",
                    "proxy",
                    1000 + d,
                    proc,
                    path,
                )
            )
        done += size
        yield rows


def load_devices(engine: Engine) -> None:
    fleet = Fleet()
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "device_id": dev,
            "hostname": host,
            "os": "Linux",
            "user": fleet.users[i],
            "token_hash": f"{i:064x}",
            "enrolled_at": now,
            "last_seen": now,
        }
        for i, (dev, host) in enumerate(fleet.devices)
    ]
    with engine.begin() as conn:
        conn.execute(
            text(
                'INSERT INTO device (device_id, hostname, os, os_version, agent_version, "user",'
                " local_ips, groups, token_hash, enrolled_at, last_seen) VALUES (:device_id,"
                " :hostname, :os, '', '', :user, '[]', '[]', :token_hash, :enrolled_at,"
                " :last_seen)"
            ),
            rows,
        )


def load(engine: Engine, n: int, end: dt.datetime) -> dict[str, float]:
    """Bulk-load n events; seconds per phase."""
    phases: dict[str, float] = {}
    clock = time.perf_counter()
    load_devices(engine)
    with engine.begin() as conn:
        for index in EVENT.indexes:
            index.drop(conn)
    phases["drop indexes"] = time.perf_counter() - clock
    clock = time.perf_counter()
    if engine.dialect.name == "sqlite":
        _sqlite_insert(engine, n, end)
    else:
        _pg_copy(engine, n, end)
    phases["insert"] = time.perf_counter() - clock
    clock = time.perf_counter()
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET maintenance_work_mem = '512MB'"))
        for index in EVENT.indexes:
            index.create(conn)
    phases["build indexes"] = time.perf_counter() - clock
    if engine.dialect.name == "postgresql":
        clock = time.perf_counter()
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                text("VACUUM ANALYZE network_event")
            )
        phases["vacuum analyze"] = time.perf_counter() - clock
    return phases


def _sqlite_insert(engine: Engine, n: int, end: dt.datetime) -> None:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA synchronous=OFF")
        placeholders = ", ".join("?" for _ in COLUMNS)
        quoted = ", ".join(f'"{c}"' for c in COLUMNS)
        statement = f"INSERT INTO network_event ({quoted}) VALUES ({placeholders})"
        for rows in generate(n, end):
            # SQLAlchemy's SQLite DateTime: the UTC wall time, always with microseconds.
            stamped = [(r[0], r[1].strftime("%Y-%m-%d %H:%M:%S.%f"), *r[2:]) for r in rows]
            cursor.execute("BEGIN")
            cursor.executemany(statement, stamped)
            cursor.execute("COMMIT")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        raw.close()


def _pg_copy(engine: Engine, n: int, end: dt.datetime) -> None:
    raw = engine.raw_connection()
    try:
        quoted = ", ".join(f'"{c}"' for c in COLUMNS)
        with raw.cursor() as cursor:  # type: ignore[attr-defined]
            for rows in generate(n, end):
                block = "".join(
                    "\t".join(v.isoformat() if isinstance(v, dt.datetime) else str(v) for v in row)
                    + "\n"
                    for row in rows
                )
                with cursor.copy(f"COPY network_event ({quoted}) FROM STDIN") as copy:
                    copy.write(block)
                raw.commit()
    finally:
        raw.close()


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """(first run ms, median ms of the next `runs`, the last result)."""
    clock = time.perf_counter()
    result = fn()
    first = (time.perf_counter() - clock) * 1000
    samples = []
    for _ in range(runs):
        clock = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - clock) * 1000)
    return first, statistics.median(samples), result


def queries(engine: Engine, end: dt.datetime, runs: int) -> list[tuple[str, float, float, str]]:
    """(name, first ms, median ms, what it found) per query."""
    month = end - dt.timedelta(days=DAYS)
    bases = base_names()
    mid, rare = bases[40], bases[20_000]

    def page(search: EventSearch) -> Callable[[Any], Any]:
        return lambda conn: search_events(conn, search, limit=100)

    cases: list[tuple[str, Callable[[Any], Any]]] = [
        (
            "device ws-0042 last hour",
            page(EventSearch(device="ws-0042.corp.example", since=end - dt.timedelta(hours=1))),
        ),
        ("domain google.com 30 days", page(EventSearch(domain="google.com", since=month))),
        (
            "domain google.com 30 days: count",
            lambda conn: count_matching(conn, EventSearch(domain="google.com", since=month)),
        ),
        (f"domain {mid} 30 days", page(EventSearch(domain=mid, since=month))),
        (f"domain {rare} 30 days", page(EventSearch(domain=rare, since=month))),
        ("user user0042 30 days", page(EventSearch(user="user0042", since=month))),
        ("process firefox 30 days", page(EventSearch(process="firefox", since=month))),
        ("process rclone 30 days", page(EventSearch(process="rclone", since=month))),
        ("action blocked 30 days", page(EventSearch(action="blocked", since=month))),
        ("deep page (cursor 10,000 down)", _deep_page(engine)),
    ]
    results = []
    with engine.connect() as conn:
        for name, fn in cases:
            first, median, result = timed(lambda fn=fn: fn(conn), runs)
            found = str(result) if isinstance(result, int) else f"{len(result.events)} events"
            results.append((name, first, median, found))
        like = text(
            "SELECT * FROM network_event WHERE (domain = :d OR domain LIKE :sub)"
            " AND time >= :since ORDER BY time DESC, id DESC LIMIT 101"
        )
        since = month if engine.dialect.name != "sqlite" else month.strftime("%Y-%m-%d %H:%M:%S")
        for name in ("google.com", mid):
            params = {"d": name, "sub": f"%.{name}", "since": since}
            first, median, rows = timed(lambda p=params: conn.execute(like, p).all(), 1)
            label = f"peer: LIKE '%.{name}' 30 days"
            results.append((label, first, median, f"{len(rows)} events"))
    return results


def _deep_page(engine: Engine) -> Callable[[Any], Any]:
    with engine.connect() as conn:
        search = EventSearch()
        before = None
        for _ in range(10):
            before = search_events(conn, search, limit=1000, before=before).last
    return lambda conn: search_events(conn, search, limit=100, before=before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--keep", type=Path, help="Directory for the SQLite file (kept).")
    args = parser.parse_args()
    end = dt.datetime.now(dt.UTC)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(f"events list: {args.events:,} events, {DEVICES:,} devices, {DAYS} days")
    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        for backend in backends:
            url = "" if backend == "sqlite" else args.pg
            with fresh_store(url, Path(tmp), "events") as (_, engine):
                phases = load(engine, args.events, end)
                total = sum(phases.values())
                steps = ", ".join(f"{k} {v:.0f} s" for k, v in phases.items())
                print(f"\n{backend}: loaded in {total:.0f} s ({steps})")
                if backend == "sqlite":
                    size = sum(p.stat().st_size for p in Path(tmp).glob("events.db*"))
                    print(f"  file size {size / 2**30:.1f} GiB")
                print(f"  {'query':<42} {'first ms':>9} {'median ms':>10}  found")
                for name, first, median, found in queries(engine, end, args.runs):
                    flag = "" if median < 300 else "  (over 300 ms)"
                    print(f"  {name:<42} {first:9.1f} {median:10.1f}  {found}{flag}")


if __name__ == "__main__":
    main()
