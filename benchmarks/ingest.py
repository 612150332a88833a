"""Cloud Discovery at scale: end-to-end ingest rate per format, and the 30-day report queries.

(1) For Squid native and Zeek http.log (TSV), a 1,000,000-line log is generated (real-looking
    hosts: catalog domains and names from the anudeep blocklists, 2,000 devices, 500 users, one
    day) and run through the real upload path: stream -> parse -> attribute to an app ->
    aggregate -> store. Lines per second, on one core, against the peer: a bare Python loop that
    splits the same file and sums bytes per host. Each is run `--repeat` times (a fresh store each
    time); the best run is the figure, the median is printed beside it (this machine is a VM whose
    speed drifts by 20% from one minute to the next).
(2) 30 days x 10,000 devices of rolled-up data (each device uses 20 of 500 apps a day) are
    written straight into the rollup tables, then the discovered-apps report (exact distinct
    users/devices over 30 days) and the machines report are timed.

    python benchmarks/ingest.py                               # SQLite in a temp dir
    python benchmarks/ingest.py --lines 200000 --devices 2000
    python benchmarks/ingest.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    python benchmarks/ingest.py --alert-policies policies/   # with the example alert policies
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import tempfile
import time
from pathlib import Path

from _store import fresh_store
from sqlalchemy import insert

from enforcer.catalog import load_catalog
from enforcer.discovery.ingest import ingest_files
from enforcer.discovery.reports import apps_report, machines_report
from enforcer.store.encoding import to_bytes
from enforcer.store.tables.discovery import APP_DAY, DEV_DAY, ENTITY

BLOCKLISTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "blocklist-anudeep"
DAY0 = 20_400  # 2025-11-08


def hosts(rnd: random.Random) -> list[str]:
    catalog = load_catalog()
    names = [f"www.{d}" for app in catalog for d in app.domains]
    rnd.shuffle(names)
    extra = []
    for f in sorted(BLOCKLISTS.glob("*.txt")) if BLOCKLISTS.is_dir() else []:
        for line in f.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and not line.startswith("#"):
                extra.append(parts[1])
    rnd.shuffle(extra)
    mixed = names + extra[:20_000]
    rnd.shuffle(mixed)
    return mixed


DEVICES = 2_000


def pick(pool: list[str], rnd: random.Random) -> str:
    """Popular hosts get most of the traffic (a Pareto tail), as in real proxy logs."""
    return pool[min(len(pool) - 1, int(rnd.paretovariate(1.2)) - 1)]


def device(i: int, rnd: random.Random) -> tuple[str, str]:
    d = rnd.randrange(DEVICES)
    return f"10.{d // 250}.{d % 250}.{10 + d % 7}", f"user{d % 500}"


def write_squid(path: Path, lines: int, rnd: random.Random) -> None:
    pool = hosts(rnd)
    t0 = DAY0 * 86400.0
    with path.open("w") as out:
        for i in range(lines):
            host = pick(pool, rnd)
            ip, user = device(i, rnd)
            if i % 3:
                url = f"{host}:443"
                method = "CONNECT"
            else:
                url = f"http://{host}/path/{i % 97}"
                method = "GET"
            out.write(
                f"{t0 + i * 0.08:.3f}    {i % 900} {ip} TCP_TUNNEL/200 {1000 + i % 50000} {method} {url} {user} HIER_DIRECT/1.2.3.4 -\n"
            )


def write_zeek(path: Path, lines: int, rnd: random.Random) -> None:
    pool = hosts(rnd)
    t0 = DAY0 * 86400.0
    fields = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "trans_depth", "method", "host",
              "uri", "referrer", "version", "user_agent", "origin", "request_body_len", "response_body_len",
              "status_code", "status_msg", "username"]  # fmt: skip
    with path.open("w") as out:
        out.write(
            "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\thttp\n"
        )
        out.write("#fields\t" + "\t".join(fields) + "\n")
        out.write("#types\t" + "\t".join(["time", "string", "addr", "port", "addr", "port", "count", "string", "string",
                                           "string", "string", "string", "string", "string", "count", "count",
                                           "count", "string", "string"]) + "\n")  # fmt: skip
        for i in range(lines):
            host = pick(pool, rnd)
            ip, _user = device(i, rnd)
            out.write(f"{t0 + i * 0.08:.6f}\tC{i}\t{ip}\t{40000 + i % 20000}\t1.2.3.4\t80\t1\tGET\t{host}\t/p/{i % 97}\t-\t1.1\t"
                      f"Mozilla/5.0\t-\t{i % 3000}\t{1000 + i % 50000}\t200\tOK\t-\n")  # fmt: skip


def bare_split(path: Path, host_field: int, bytes_field: int, sep: str | None) -> float:
    start = time.perf_counter()
    totals: dict[str, int] = {}
    with path.open() as f:
        for line in f:
            if line.startswith("#"):
                continue
            parts = line.split(sep)
            totals[parts[host_field]] = totals.get(parts[host_field], 0) + int(parts[bytes_field])
    return time.perf_counter() - start


def seed_rollups(engine, devices: int, apps: list[str], days: int, rnd: random.Random) -> float:  # type: ignore[no-untyped-def]
    """30 days x N devices: each device uses 20 apps a day. Written straight into the rollups."""
    start = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            insert(ENTITY),
            [{"kind": "device", "name": f"pc-{d:05d}", "ordinal": d} for d in range(devices)],
        )
        conn.execute(
            insert(ENTITY),
            [{"kind": "user", "name": f"user{u}", "ordinal": u} for u in range(devices // 2)],
        )
        for day in range(DAY0, DAY0 + days):
            per_app: dict[str, list[int]] = {}
            dev_rows = []
            for d in range(devices):
                for a in rnd.sample(range(len(apps)), 20):
                    per_app.setdefault(apps[a], []).append(d)
                dev_rows.append({"day": day, "device": d, "transactions": 400, "bytes_up": 10**6 + d, "bytes_down": 10**7,
                                 "blocked": d % 3, "first_seen": day * 86400.0, "last_seen": day * 86400.0 + 80000,
                                 "users": to_bytes(1 << (d // 2)), "ips": to_bytes(1 << d)})  # fmt: skip
            conn.execute(insert(DEV_DAY), dev_rows)
            app_rows = []
            for app, devs in per_app.items():
                bits = 0
                for d in devs:
                    bits |= 1 << d
                users = 0
                for d in devs:
                    users |= 1 << (d // 2)
                app_rows.append({"day": day, "app_id": app, "domain": "", "transactions": 20 * len(devs),
                                 "bytes_up": 5000 * len(devs), "bytes_down": 50000 * len(devs), "blocked": 0,
                                 "first_seen": day * 86400.0, "last_seen": day * 86400.0 + 80000,
                                 "devices": to_bytes(bits), "users": to_bytes(users), "ips": to_bytes(bits)})  # fmt: skip
            conn.execute(insert(APP_DAY), app_rows)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--database-url", default="")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per format (best and median are printed)"
    )
    parser.add_argument(
        "--alert-policies",
        type=Path,
        default=None,
        metavar="DIR",
        help="check this policy set's alert policies on each upload (e.g. policies/)",
    )
    args = parser.parse_args()
    rnd = random.Random(42)
    catalog = load_catalog()
    policies = ()
    if args.alert_policies is not None:
        from enforcer.pipeline.load import load_state

        state = load_state(args.alert_policies, catalog=catalog)
        policies = tuple(p.item for p in state.policy.alert_policies)
    backend = "postgresql" if args.database_url.startswith("postgresql") else "sqlite"
    print(f"ingest benchmark, store={backend}, alert policies: {len(policies)}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for fmt, writer, host_field, bytes_field, sep in (
            ("squid", write_squid, 6, 4, None),
            ("zeek", write_zeek, 8, 15, "\t"),
        ):
            log = work / f"{fmt}.log"
            writer(log, args.lines, rnd)
            peer = min(bare_split(log, host_field, bytes_field, sep) for _ in range(args.repeat))
            runs = []
            for run in range(args.repeat):
                with fresh_store(args.database_url, work, f"{fmt}{run}") as (_url, engine):
                    start = time.perf_counter()
                    stats = ingest_files(engine, catalog, [log], fmt, policies=policies)
                    runs.append(time.perf_counter() - start)
                assert stats.records == args.lines, stats
            took, median = min(runs), statistics.median(runs)
            print(f"  {fmt:<6} {args.lines:,} lines end to end in {took:6.2f} s = {args.lines / took:>9,.0f} lines/s"
                  f" (median of {args.repeat}: {args.lines / median:,.0f}; target >= 300,000); bare split+sum"
                  f" {args.lines / peer:>9,.0f} lines/s; ratio {peer / took:.2f}")  # fmt: skip
        with fresh_store(args.database_url, work, "rollups") as (_url, engine):
            rollup_queries(engine, catalog, args, rnd)


def rollup_queries(engine, catalog, args: argparse.Namespace, rnd: random.Random) -> None:  # type: ignore[no-untyped-def]
    """Seed 30 days x N devices of rollups, then time the apps and machines reports."""
    app_ids = [a.id for a in catalog][:500]
    seeded = seed_rollups(engine, args.devices, app_ids, args.days, rnd)
    first, last = DAY0, DAY0 + args.days - 1
    with engine.connect() as conn:
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            rows = apps_report(conn, catalog, first, last)
            timings.append(time.perf_counter() - start)
        assert rows and max(r["devices"] for r in rows) <= args.devices
        mtimes = []
        for _ in range(3):
            start = time.perf_counter()
            machines_report(
                conn, catalog, first, last, stale_after=dt.timedelta(minutes=10), limit=50
            )
            mtimes.append(time.perf_counter() - start)
    print(
        f"  rollups: {args.days} days x {args.devices:,} devices x 20 apps/day seeded in {seeded:.1f} s"
    )
    print(f"  discovered-apps report over {args.days} days: {min(timings) * 1000:7.0f} ms (best of 3; target < 1 s), "
          f"{len(rows)} apps, top app on {rows[0]['devices']:,} devices")  # fmt: skip
    print(
        f"  machines report (page of 50) over {args.days} days: {min(mtimes) * 1000:7.0f} ms (best of 3)"
    )


if __name__ == "__main__":
    main()
