"""Cloud Discovery over HTTP: reports as JSON and CSV, log upload, alerts; admin only."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

from enforcer.catalog import load_catalog
from enforcer.discovery.continuous import process_events
from enforcer.models import Action, Indicator, Severity
from enforcer.store.events import EventRecord, store_batch
from enforcer.store.manual import add_manual
from tests.api.conftest import Api, bearer

LOGS = Path(__file__).resolve().parents[2] / "examples" / "logs"
ROUTES = ["apps", "domains", "machines", "users", "alerts", "machines/x", "users/x"]


def test_reports_need_the_admin_token(api: Api) -> None:
    device = api.enroll("pc-1")
    for route in ROUTES:
        assert api.client.get(f"/api/v1/discovery/{route}").status_code == 401
        assert (
            api.client.get(f"/api/v1/discovery/{route}", headers=bearer(device)).status_code == 403
        )
    upload = api.client.post(
        "/api/v1/discovery/upload?format=squid", content=b"x", headers=bearer(device)
    )
    assert upload.status_code == 403


def test_upload_then_reports_in_json_and_csv(api: Api) -> None:
    body = (LOGS / "squid-access.log.gz").read_bytes()
    done = api.client.post("/api/v1/discovery/upload?format=squid", content=body, headers=api.admin)
    assert done.status_code == 200, done.text
    assert done.json()["records"] == 30 and done.json()["badLines"] == 0
    apps = api.client.get("/api/v1/discovery/apps?since=3650d", headers=api.admin).json()
    assert sum(a["transactions"] for a in apps) == done.json()["attributed"]
    exported = api.client.get("/api/v1/discovery/apps?since=3650d&format=csv", headers=api.admin)
    assert exported.headers["content-type"].startswith("text/csv")
    assert [r["app"] for r in csv.DictReader(io.StringIO(exported.text))] == [
        a["app"] for a in apps
    ]
    machines = api.client.get("/api/v1/discovery/machines?since=3650d", headers=api.admin).json()
    name = machines[0]["device"]
    machine = api.client.get(f"/api/v1/discovery/machines/{name}?since=3650d", headers=api.admin)
    assert machine.status_code == 200 and machine.json()["device"] == name
    assert api.client.get("/api/v1/discovery/machines/nope", headers=api.admin).status_code == 404
    bad = api.client.post("/api/v1/discovery/upload?format=nope", content=b"x", headers=api.admin)
    assert bad.status_code == 422
    assert (
        api.client.get("/api/v1/discovery/apps?since=forever", headers=api.admin).status_code == 422
    )


def test_alerts_list_and_acknowledge(api: Api) -> None:
    add_manual(
        api.engine,
        Indicator("mega.nz", Action.BLOCK, Severity.HIGH, generate_alert=True),
        actor="t",
    )
    now = dt.datetime.now(dt.UTC)
    event = EventRecord(
        now,
        "pc-1",
        "bob",
        "10.0.0.7",
        "mega.nz",
        "",
        443,
        0,
        0,
        "blocked",
        "mega.nz",
        "mega",
        "dns",
    )
    store_batch(api.engine, device_id="pc-1", batch_id="b1", events=[event])
    process_events(api.engine, load_catalog())
    [alert] = api.client.get("/api/v1/discovery/alerts", headers=api.admin).json()
    assert alert["severity"] == "High" and alert["status"] == "open"
    ack = api.client.post(f"/api/v1/discovery/alerts/{alert['id']}/acknowledge", headers=api.admin)
    assert ack.status_code == 204
    assert api.client.get("/api/v1/discovery/alerts?status=open", headers=api.admin).json() == []
    assert (
        api.client.post("/api/v1/discovery/alerts/999/acknowledge", headers=api.admin).status_code
        == 404
    )
