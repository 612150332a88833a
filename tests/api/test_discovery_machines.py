"""The discovery API names machines by hostname and reports top processes: a device enrols,
reports its hostname, uploads events naming their process; the reports show one machine with
its enrolled device, and the programs behind its traffic and behind an app's."""

from __future__ import annotations

import datetime as dt

from enforcer.catalog import load_catalog
from enforcer.discovery.continuous import process_events
from tests.api.conftest import Api, bearer


def _event(
    process: str, domain: str = "www.dropbox.com", app: str = "dropbox"
) -> dict[str, object]:
    return {
        "time": dt.datetime.now(dt.UTC).isoformat(),
        "hostname": "ignored-event-hostname",
        "domain": domain,
        "action": "allowed",
        "application": app,
        "source": "proxy",
        "bytesUp": 10,
        "bytesDown": 100,
        "pid": 4242,
        "processName": process,
        "processPath": f"/usr/bin/{process}",
    }


def test_machine_and_app_reports_by_hostname_with_top_processes(api: Api) -> None:
    token = api.enroll("dev-42")
    facts = {"hostname": "laptop-42", "os": "Debian GNU/Linux", "osVersion": "12"}
    assert (
        api.client.put("/api/v1/devices/self", json=facts, headers=bearer(token)).status_code == 204
    )
    # Enrolled with the shared secret: its hostname counts once an admin approves the device.
    approve = api.client.post("/api/v1/devices/dev-42/approve", headers=api.admin)
    assert approve.status_code == 204
    assert api.client.post("/api/v1/devices/nobody/approve", headers=api.admin).status_code == 404
    assert api.client.post("/api/v1/devices/dev-42/approve", headers=bearer(token)).status_code in (
        401,
        403,
    )
    events = [_event("firefox"), _event("firefox"), _event("rclone"), _event("", "github.com", "")]
    uploaded = api.client.post(
        "/api/v1/events", json={"batchId": "b1", "events": events}, headers=bearer(token)
    )
    assert uploaded.status_code == 200, uploaded.text
    process_events(api.engine, load_catalog())

    machines = api.client.get("/api/v1/discovery/machines", headers=api.admin).json()
    assert [m["device"] for m in machines] == ["laptop-42"]
    assert machines[0]["os"] == "Debian GNU/Linux 12" and machines[0]["stale"] is False

    machine = api.client.get("/api/v1/discovery/machines/laptop-42", headers=api.admin).json()
    assert [d["deviceId"] for d in machine["enrolledDevices"]] == ["dev-42"]
    assert [(p["process"], p["requests"]) for p in machine["topProcesses"]] == [
        ("firefox", 2),
        ("rclone", 1),
    ]

    app = api.client.get("/api/v1/discovery/apps/dropbox", headers=api.admin)
    assert app.status_code == 200 and app.json()["machines"] == ["laptop-42"]
    assert [p["process"] for p in app.json()["topProcesses"]] == ["firefox", "rclone"]
    missing = api.client.get("/api/v1/discovery/apps/not-an-app", headers=api.admin)
    assert missing.status_code == 404
