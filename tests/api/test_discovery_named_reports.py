"""Named reports and alert handling over the API, on both back ends: an upload names its
snapshot report, every report route takes ?report=, a snapshot is deleted with its data, alerts
are filtered by policy and closed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from enforcer.store.alerts import raise_policy_alerts
from tests.api.conftest import Api

LOGS = Path(__file__).resolve().parents[2] / "examples" / "logs"
ROUTES = ["apps", "domains", "machines", "users"]


def test_uploads_are_named_reports_every_route_selects_one(api: Api) -> None:
    base = "/api/v1/discovery"
    for name, fmt, log in (
        ("proxy", "squid", "squid-access.log"),
        ("zeek", "zeek", "zeek-http.log"),
    ):
        done = api.client.post(
            f"{base}/upload?format={fmt}&report={name}", content=(LOGS / log).read_bytes(),
            headers=api.admin,
        )  # fmt: skip
        assert done.status_code == 200 and done.json()["report"] == name, done.text
    taken = api.client.post(
        f"{base}/upload?format=squid&report=proxy", content=b"x", headers=api.admin
    )
    assert taken.status_code == 409 and "exists already" in taken.text
    listed = api.client.get(f"{base}/reports", headers=api.admin).json()
    assert {(r["name"], r["kind"], r["lines"]) for r in listed} == {
        ("proxy", "snapshot", 30), ("zeek", "snapshot", 30),
    }  # fmt: skip

    def apps(report: str) -> dict[str, int]:
        got = api.client.get(f"{base}/apps?since=3650d&report={report}", headers=api.admin)
        assert got.status_code == 200, got.text
        return {a["app"]: a["transactions"] for a in got.json()}

    proxy, zeek, every = apps("proxy"), apps("zeek"), apps("all")
    assert every == {a: proxy.get(a, 0) + zeek.get(a, 0) for a in set(proxy) | set(zeek)}
    for route in ROUTES:
        unknown = api.client.get(f"{base}/{route}?report=nope", headers=api.admin)
        assert unknown.status_code == 404 and "no report named 'nope'" in unknown.text, route
    assert api.client.delete(f"{base}/reports/proxy", headers=api.admin).status_code == 204
    assert apps("all") == zeek
    assert api.client.delete(f"{base}/reports/proxy", headers=api.admin).status_code == 404


def test_alerts_filter_by_policy_and_close(api: Api) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with api.engine.begin() as conn:
        raise_policy_alerts(
            conn,
            [{"policy": "blocked app hit", "when": "blocked_app", "severity": "low",
              "machine": "pc-1", "user": "bob", "app_id": "mega", "domain": "mega.nz",
              "count": 3, "time": now, "details": "3 hit(s) on blocked app mega (mega.nz)"}],
        )  # fmt: skip
    base = "/api/v1/discovery/alerts"
    (alert,) = api.client.get(f"{base}?policy=blocked app hit", headers=api.admin).json()
    assert (alert["machine"], alert["hits"], alert["status"]) == ("pc-1", 3, "open")
    closed = api.client.post(f"{base}/{alert['id']}/close", headers=api.admin)
    assert closed.status_code == 204
    (alert,) = api.client.get(f"{base}?status=closed", headers=api.admin).json()
    assert alert["status"] == "closed" and alert["acknowledged_by"] == "admin"
    assert api.client.post(f"{base}/999999/close", headers=api.admin).status_code == 404
