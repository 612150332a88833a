"""Rollups equal a direct computation from the raw records, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random

from sqlalchemy import Engine

from enforcer.catalog import Catalog
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.records import Record
from enforcer.discovery.reports import (
    apps_report,
    domains_report,
    impact,
    machine_report,
    user_report,
    users_report,
)
from enforcer.store.rollups import merge_rollup

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
T0 = NOW.timestamp()
HOSTS = ["www.boxy.example", "sharefast.example", "dl.sharefast.example", "pastey.example",
         "api.chatbot.example", "files.unknown-thing.co.uk", "cdn.unknown-thing.co.uk", "other.example.org"]  # fmt: skip


def records(n: int, seed: int = 7) -> list[Record]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        t = T0 - rnd.uniform(0, 6 * 86400)
        dev = f"pc-{rnd.randrange(12)}"
        out.append(Record(time=t, host=rnd.choice(HOSTS), src_ip=f"10.0.0.{rnd.randrange(20)}",
                          user=rnd.choice(["alice", "bob", "carol", ""]), device=dev,
                          bytes_up=rnd.randrange(5000), bytes_down=rnd.randrange(50000),
                          action=rnd.choice(["allowed", "allowed", "blocked"])))  # fmt: skip
    return out


def ingest(engine: Engine, catalog: Catalog, recs: list[Record], max_keys: int = 50) -> Aggregator:
    agg = Aggregator(Attributor(catalog), max_keys=max_keys)
    for start in range(0, len(recs), 37):
        agg.add_all(recs[start : start + 37])
        if agg.full:
            merge_rollup(engine, agg.rollup())
    merge_rollup(engine, agg.rollup())
    return agg


def test_rollups_equal_a_direct_computation(engine: Engine, catalog: Catalog) -> None:
    recs = records(3000)
    agg = ingest(engine, catalog, recs)
    attr = Attributor(catalog)
    first, last = int(T0 // 86400) - 7, int(T0 // 86400)
    with engine.connect() as conn:
        apps = {r["app"]: r for r in apps_report(conn, catalog, first, last)}
        domains = {r["domain"]: r for r in domains_report(conn, first, last)}
        users = {r["user"]: r for r in users_report(conn, first, last)}
        machine = machine_report(
            conn, catalog, "pc-3", first, last, stale_after=dt.timedelta(minutes=10)
        )
        alice = user_report(conn, "alice", first, last)
    expected: dict[str, dict] = {}
    for r in recs:
        app_id, domain = attr(r.host)
        e = expected.setdefault(
            app_id or domain,
            {
                "tx": 0,
                "up": 0,
                "down": 0,
                "blocked": 0,
                "users": set(),
                "devices": set(),
                "ips": set(),
            },
        )
        e["tx"] += 1
        e["up"] += r.bytes_up
        e["down"] += r.bytes_down
        e["blocked"] += r.action == "blocked"
        e["devices"].add(r.device)
        e["ips"].add(r.src_ip)
        if r.user:
            e["users"].add(r.user)
    assert set(apps) == {"boxy", "sharefast", "pastey", "chatbot"}
    assert set(domains) == {"unknown-thing.co.uk", "example.org"}
    for key, e in expected.items():
        got = apps.get(key) or domains[key]
        assert (got["transactions"], got["upload"], got["download"]) == (
            e["tx"],
            e["up"],
            e["down"],
        ), key
        assert (got["users"], got["devices"]) == (len(e["users"]), len(e["devices"])), key
        if key in apps:
            assert (got["blocked"], got["ips"]) == (e["blocked"], len(e["ips"]))
    assert agg.records == 3000 and agg.attributed + agg.unrecognised == 3000
    mine = [r for r in recs if r.device == "pc-3"]
    assert machine["transactions"] == len(mine)
    assert {u["user"] for u in machine["users"]} == {r.user for r in mine if r.user}
    assert {i["ip"] for i in machine["ipAddresses"]} == {r.src_ip for r in mine}
    assert users["alice"]["transactions"] == sum(1 for r in recs if r.user == "alice")
    assert set(alice["devices"]) == {r.device for r in recs if r.user == "alice"}


def test_ingesting_twice_adds_up(engine: Engine, catalog: Catalog) -> None:
    recs = records(500, seed=3)
    ingest(engine, catalog, recs)
    ingest(engine, catalog, recs, max_keys=10_000)
    with engine.connect() as conn:
        apps = {r["app"]: r for r in apps_report(conn, catalog, 0, 10**6)}
        devices_before = apps["sharefast"]["devices"]
    assert sum(a["transactions"] for a in apps.values()) == 2 * sum(
        1 for r in recs if Attributor(catalog)(r.host)[0]
    )
    assert devices_before == len({r.device for r in recs if "sharefast" in r.host})


def test_impact_counts_requests_users_devices_of_the_last_week(
    engine: Engine, catalog: Catalog
) -> None:
    recs = records(800, seed=11)
    old = [r._replace(time=r.time - 30 * 86400) for r in records(100, seed=12)]
    ingest(engine, catalog, recs + old)
    with engine.connect() as conn:
        got = impact(conn, ["sharefast", "pastey"], now=NOW)
    for app, hosts in (
        ("sharefast", ("sharefast.example", "dl.sharefast.example")),
        ("pastey", ("pastey.example",)),
    ):
        mine = [r for r in recs if r.host in hosts]
        assert got[app] == {
            "requests": len(mine),
            "users": len({r.user for r in mine if r.user}),
            "devices": len({r.device for r in mine}),
        }


def test_text_a_log_carried_is_stored_on_every_back_end(engine: Engine, catalog: Catalog) -> None:
    """PostgreSQL refuses NUL in text: names with one are stored with U+FFFD instead."""
    recs = [Record(T0, "evil\x00.example.org", "10.0.0.1", user="bo\x00b", device="pc\x00"),
            Record(T0, "evil\ufffd.example.org", "10.0.0.1", user="bo\ufffdb", device="pc\ufffd")]  # fmt: skip
    ingest(engine, catalog, recs)
    with engine.connect() as conn:
        users = users_report(conn, 0, 10**6)
    assert [(u["user"], u["transactions"]) for u in users] == [("bo\ufffdb", 2)]
