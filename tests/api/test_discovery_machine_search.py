"""``GET /api/v1/discovery/machines?search=`` on both back ends: machines whose hostname, IP
address or user matches (a user by any form of the name), and an empty list when none does."""

from __future__ import annotations

import datetime as dt

from enforcer.catalog import load_catalog
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.records import Record
from enforcer.store.rollups import merge_rollup
from tests.api.conftest import Api


def test_machines_are_searched_by_hostname_ip_and_user(api: Api) -> None:
    now = dt.datetime.now(dt.UTC).timestamp() - 60
    aggregator = Aggregator(Attributor(load_catalog()))
    aggregator.add_all(
        [
            Record(now, "www.dropbox.com", "10.1.2.3", "CONTOSO\\erin", "laptop-finance-7"),
            Record(now, "zoom.us", "10.9.8.7", "bob", "build-server"),
            Record(now, "zoom.us", "192.0.2.44", "", "kiosk-lobby"),
        ]
    )
    merge_rollup(api.engine, aggregator.rollup())

    def search(text: str) -> list[str]:
        got = api.client.get(
            "/api/v1/discovery/machines", params={"search": text}, headers=api.admin
        )
        assert got.status_code == 200, got.text
        return sorted(m["device"] for m in got.json())

    assert search("") == ["build-server", "kiosk-lobby", "laptop-finance-7"]
    assert search("FINANCE") == ["laptop-finance-7"]  # part of a hostname, any case
    assert search("192.0.2.44") == ["kiosk-lobby"]  # an address
    assert search("10.9.8") == ["build-server"]  # part of one
    assert search("erin@contoso.com") == ["laptop-finance-7"]  # a user, by another form
    assert search("bob") == ["build-server"]
    assert search("nobody-like-this") == []
    too_long = api.client.get(
        "/api/v1/discovery/machines", params={"search": "x" * 257}, headers=api.admin
    )
    assert too_long.status_code == 422
