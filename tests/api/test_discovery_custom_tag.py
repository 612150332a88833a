"""``GET /api/v1/discovery/apps?tag=`` on both back ends: only the apps the policy (as last
applied) gives that custom tag."""

from __future__ import annotations

import datetime as dt

from enforcer.catalog import load_catalog
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.records import Record
from enforcer.plan.model import AppState
from enforcer.store.reviews import write_custom_tags_and_reviews
from enforcer.store.rollups import merge_rollup
from tests.api.conftest import Api


def test_discovered_apps_are_filtered_by_custom_tag(api: Api) -> None:
    now = dt.datetime.now(dt.UTC).timestamp() - 60
    aggregator = Aggregator(Attributor(load_catalog()))
    aggregator.add_all(
        [
            Record(now, "www.dropbox.com", "10.1.2.3", "erin", "laptop-7"),
            Record(now, "zoom.us", "10.9.8.7", "bob", "build-server"),
        ]
    )
    merge_rollup(api.engine, aggregator.rollup())
    with api.engine.begin() as conn:
        write_custom_tags_and_reviews(
            conn,
            [AppState("dropbox", "Dropbox", "file-sharing", 5.0, (), ("approved-for-finance",))],
        )

    def apps(**params: str) -> list[str]:
        got = api.client.get("/api/v1/discovery/apps", params=params, headers=api.admin)
        assert got.status_code == 200, got.text
        return sorted(a["app"] for a in got.json())

    assert apps() == ["dropbox", "zoom"]
    assert apps(tag="approved-for-finance") == ["dropbox"]
    assert apps(tag="no-such-tag") == []
    too_long = api.client.get("/api/v1/discovery/apps", params={"tag": "x" * 65}, headers=api.admin)
    assert too_long.status_code == 422
