"""One person, one user; a machine's last user is the latest by time. On both back ends."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine

from enforcer.catalog import Catalog
from enforcer.config import Settings
from enforcer.discovery import reports
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.identity import (
    UserMapError,
    UserNames,
    load_user_names,
    normalize_user,
)
from enforcer.discovery.records import Record
from enforcer.store.rollups import merge_rollup

STALE = dt.timedelta(minutes=10)


def _ingest(
    engine: Engine, catalog: Catalog, records: list[Record], users: UserNames | None = None
) -> None:
    aggregator = Aggregator(Attributor(catalog), users=users)
    aggregator.add_all(records)
    merge_rollup(engine, aggregator.rollup())


def _at(hour: int) -> float:
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today + dt.timedelta(hours=hour)).timestamp()


def rec(t: float, user: str, device: str = "pc-01", host: str = "boxy.example") -> Record:
    return Record(time=t, host=host, src_ip="10.0.0.1", user=user, device=device, bytes_up=10)


def test_the_last_user_is_the_latest_by_time_not_the_newest_name(
    engine: Engine, catalog: Catalog
) -> None:
    # zed is numbered first (ordinal 0), then amy (1): the old code took the highest ordinal
    # of the latest day, amy, although zed used the machine last.
    _ingest(engine, catalog, [rec(_at(0), "zed")])
    _ingest(engine, catalog, [rec(_at(0), "amy", device="pc-02")])
    _ingest(engine, catalog, [rec(_at(1), "amy"), rec(_at(2), "zed")])
    first, last = reports.day_range(1)
    with engine.connect() as conn:
        rows = reports.machines_report(conn, catalog, first, last, stale_after=STALE)
    assert {r["device"]: r["lastUser"] for r in rows} == {"pc-01": "zed", "pc-02": "amy"}
    # A later merge of an earlier time does not take it back.
    _ingest(engine, catalog, [rec(_at(1) + 60, "amy")])
    with engine.connect() as conn:
        rows = reports.machines_report(conn, catalog, first, last, stale_after=STALE)
    assert {r["device"]: r["lastUser"] for r in rows}["pc-01"] == "zed"


def test_the_rules_join_the_forms_of_one_name() -> None:
    assert {normalize_user(n) for n in ("alice", "Alice@Contoso.com", "CONTOSO\\alice")} == {
        "alice"
    }
    kept = {normalize_user(n, keep_domains=True) for n in ("alice", "alice@contoso.com")}
    assert kept == {"alice", "alice@contoso.com"}
    assert normalize_user("CONTOSO\\Alice", keep_domains=True) == "alice@contoso"


def test_three_forms_of_alice_are_one_user_with_her_forms_listed(
    engine: Engine, catalog: Catalog
) -> None:
    t = _at(1)
    _ingest(
        engine,
        catalog,
        [
            rec(t, "alice"),
            rec(t + 1, "alice@contoso.com", device="pc-02"),
            rec(t + 2, "CONTOSO\\alice", device="pc-03"),
            rec(t + 3, "bob"),
        ],
    )
    first, last = reports.day_range(1)
    with engine.connect() as conn:
        users = reports.users_report(conn, first, last)
        alice = reports.user_report(conn, "CONTOSO\\Alice", first, last)
        by_total = reports.user_totals(conn, first, last)
    assert sorted(u["user"] for u in users) == ["alice", "bob"]
    assert {u["user"]: u["devices"] for u in users}["alice"] == 3
    assert sorted(r["user"] for r in by_total) == ["alice", "bob"]
    assert alice["user"] == "alice" and alice["devices"] == ["pc-01", "pc-02", "pc-03"]
    assert [f["form"] for f in alice["forms"]] == ["CONTOSO\\alice", "alice", "alice@contoso.com"]


def test_a_setting_keeps_domains_apart_and_a_mapping_file_joins_names(
    engine: Engine, catalog: Catalog, tmp_path: Path
) -> None:
    mapping = tmp_path / "users.map"
    mapping.write_text("# old account\na.smith = alice@contoso.com\n")
    names = load_user_names(
        Settings(discovery_user_domains=True, discovery_user_map=mapping)  # type: ignore[call-arg]
    )
    t = _at(1)
    _ingest(
        engine,
        catalog,
        [rec(t, "alice@contoso.com"), rec(t, "alice@fabrikam.com"), rec(t, "A.Smith")],
        users=names,
    )
    first, last = reports.day_range(1)
    with engine.connect() as conn:
        users = {u["user"]: u for u in reports.users_report(conn, first, last)}
        joined = reports.user_report(conn, "a.smith", first, last, names=names)
    assert sorted(users) == ["alice@contoso.com", "alice@fabrikam.com"]
    assert users["alice@contoso.com"]["transactions"] == 2
    assert joined["user"] == "alice@contoso.com"
    assert [f["form"] for f in joined["forms"]] == ["A.Smith", "alice@contoso.com"]


def test_a_bad_mapping_file_names_its_line(tmp_path: Path) -> None:
    mapping = tmp_path / "users.map"
    mapping.write_text("a.smith = alice\nbob\n")
    with pytest.raises(UserMapError, match=r"users.map:2: expected 'FORM = USER', got 'bob'"):
        load_user_names(Settings(discovery_user_map=mapping))  # type: ignore[call-arg]
