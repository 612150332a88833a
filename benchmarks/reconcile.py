"""Reconcile at scale: 1,000,000 synthetic domain indicators through the real pipeline.

A synthetic catalog of N/100 apps with 100 domains each is unsanctioned by one rule; the script
reports, per store back end:

  expand   policy + catalog -> desired state (1M indicators)
  (a)      first plan + apply into an empty store
  (b)      a no-op plan (nothing changed)
  (c)      plan + apply with 1% of the indicators changed (1% of the apps switch block -> warn)
  peak RSS of the process

and, as a peer, plain sqlite3 executemany inserting the same rows (for scale).

    python benchmarks/reconcile.py                      # SQLite in a temp dir, 1,000,000
    python benchmarks/reconcile.py --count 100000
    python benchmarks/reconcile.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sqlite3
import tempfile
import textwrap
import time
from pathlib import Path

from _store import fresh_store

from enforcer.catalog import App, Catalog, RiskAttributes
from enforcer.decide.expand import expand
from enforcer.gcpause import paused_gc
from enforcer.pipeline.run import apply, make_plan
from enforcer.policy.evaluate import compile_policy
from enforcer.policy.loader import load_policy_files

DOMAINS_PER_APP = 100
NOW = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)


def synthetic_catalog(count: int) -> Catalog:
    risk = RiskAttributes(mfa=False, soc2=False, recent_breach=True)
    apps = []
    for i in range(count // DOMAINS_PER_APP):
        domains = tuple(f"h{j}.svc{i}-{j % 7}.example" for j in range(DOMAINS_PER_APP))
        apps.append(App(id=f"app{i}", name=f"App {i}", vendor="Synthetic", category="paste",
                        domains=domains, risk=risk))  # fmt: skip
    return Catalog(apps)


def write_policies(directory: Path, warn_apps: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    body = "rules:\n  - {name: all paste sites, category: paste, tag: unsanctioned}\n"
    if warn_apps:
        body += "apps:\n" + "".join(
            f"  - {{app: app{i}, tag: unsanctioned, action: warn}}\n" for i in range(warn_apps)
        )
    (directory / "bench.yaml").write_text(body)


def desired_state(directory: Path, catalog: Catalog):  # type: ignore[no-untyped-def]
    state = compile_policy(load_policy_files(directory), catalog, NOW)
    with paused_gc():
        return expand(state)


def timed(label: str, fn, results: dict[str, float]):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    value = fn()
    results[label] = time.perf_counter() - start
    return value


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sqlite_peer(count: int, directory: Path) -> tuple[float, float]:
    """Plain sqlite3: executemany insert of `count` rows, and reading them back into a dict."""
    db = sqlite3.connect(directory / "peer.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE ind (scope TEXT, value TEXT, action TEXT, severity TEXT, title TEXT,"
               " app_id TEXT, UNIQUE(scope, value))")  # fmt: skip
    rows = (("", f"h{j}.svc{i}", "Block", "Medium", f"App {i} (unsanctioned)", f"app{i}")
            for i in range(count // 100) for j in range(100))  # fmt: skip
    start = time.perf_counter()
    with db:
        db.executemany("INSERT INTO ind VALUES (?, ?, ?, ?, ?, ?)", rows)
    insert = time.perf_counter() - start
    start = time.perf_counter()
    back = {(r[0], r[1]): r for r in db.execute("SELECT * FROM ind")}
    read = time.perf_counter() - start
    assert len(back) == count
    db.close()
    return insert, read


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a temp dir")
    args = parser.parse_args()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with fresh_store(args.database_url, work) as (_url, engine):
            catalog = timed("catalog", lambda: synthetic_catalog(args.count), results)
            policies = work / "policies"
            write_policies(policies, 0)
            desired = timed("expand", lambda: desired_state(policies, catalog), results)
            assert len(desired.indicators) == args.count, len(desired.indicators)
            plan = timed("a_plan", lambda: make_plan(engine, desired), results)
            timed("a_apply", lambda: apply(engine, plan), results)
            del plan
            noop = timed("b_plan", lambda: make_plan(engine, desired), results)
            assert not noop.has_changes
            desired = noop = None  # a daemon holds one desired state at a time
            write_policies(policies, args.count // DOMAINS_PER_APP // 100)
            changed = desired_state(policies, catalog)
            plan = timed("c_plan", lambda: make_plan(engine, changed), results)
            assert len(plan.changes) == args.count // 100, len(plan.changes)
            timed("c_apply", lambda: apply(engine, plan), results)
        peak = peak_rss_mb()
        peer_insert, peer_read = sqlite_peer(args.count, work)
    backend = "postgresql" if args.database_url.startswith("postgresql") else "sqlite"
    print(
        textwrap.dedent(f"""
        reconcile benchmark: {args.count:,} indicators, store={backend}
          expand (policy + catalog -> desired)   {results["expand"]:7.2f} s
          (a) first plan                           {results["a_plan"]:7.2f} s
          (a) first apply                          {results["a_apply"]:7.2f} s   plan+apply {results["a_plan"] + results["a_apply"]:.2f} s (target < 30 s)
          (b) no-op plan                           {results["b_plan"]:7.2f} s   (target < 2 s)
          (c) 1% change plan                       {results["c_plan"]:7.2f} s
          (c) 1% change apply                      {results["c_apply"]:7.2f} s   plan+apply {results["c_plan"] + results["c_apply"]:.2f} s (target < 5 s)
          peak RSS                                 {peak:7.0f} MB  (target < 1024 MB)
        peer: plain sqlite3 executemany insert     {peer_insert:7.2f} s, read all into a dict {peer_read:.2f} s
          ratio first apply / sqlite3 insert       {(results["a_plan"] + results["a_apply"]) / peer_insert:7.2f}x
    """).strip()
    )


if __name__ == "__main__":
    main()
