"""Unrecognised domains are candidates for custom apps: names that cannot be a cloud app
(wildcards, reverse lookups, local, single-label and service names) are counted, not listed."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine

from enforcer.catalog import load_catalog
from enforcer.discovery import reports
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor, is_junk_domain
from enforcer.discovery.records import Record
from enforcer.store.rollups import merge_rollup

JUNK = ["*", "4.3.2.1.in-addr.arpa", "b.a.ip6.arpa", "printer.local", "wpad",
        "_ldap._tcp.corp.example", "nas.home.arpa", "db.internal"]  # fmt: skip


@pytest.mark.parametrize("name", JUNK)
def test_names_that_cannot_be_cloud_apps(name: str) -> None:
    assert is_junk_domain(name)


@pytest.mark.parametrize("name", ["example.com", "files.example.co.uk", "intranet.acme.example"])
def test_real_domains_are_kept(name: str) -> None:
    assert not is_junk_domain(name)


def test_the_domains_report_counts_junk_and_lists_the_rest(engine: Engine) -> None:
    now = dt.datetime.now(dt.UTC).timestamp() - 600
    agg = Aggregator(Attributor(load_catalog()))
    agg.add_all(
        Record(time=now, host=host, src_ip="10.0.0.1", user="alice", device="pc-1",
               bytes_up=1, bytes_down=2)
        for host in [*JUNK, "tracker.weird-thing.example"]
    )  # fmt: skip
    merge_rollup(engine, agg.rollup())
    first, last = reports.day_range(7)
    with engine.connect() as conn:
        rows, junk = reports.domains_and_junk(conn, first, last)
    assert [r["domain"] for r in rows] == ["weird-thing.example"]
    assert junk == len(JUNK)
