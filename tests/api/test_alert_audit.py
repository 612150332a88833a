"""Alerts acknowledged and closed through the API are audited as the calling account, once each;
an unknown alert writes nothing, an analyst is refused."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, text

from enforcer.store.accounts import Role, add_account
from enforcer.store.alerts import insert_alerts
from enforcer.store.audit import AuditEntry, list_audit
from tests.api.conftest import Api, bearer


def audit(engine: Engine, **filters: str) -> list[AuditEntry]:
    with engine.connect() as conn:
        return list_audit(conn, **filters)  # type: ignore[arg-type]


def one_alert(engine: Engine) -> int:
    with engine.begin() as conn:
        insert_alerts(conn, [{
            "time": dt.datetime.now(dt.UTC), "device_id": "pc-1", "user": "dave",
            "domain": "mega.nz", "indicator": "mega.nz", "app_id": "mega", "action": "blocked",
            "severity": "High", "status": "open", "event_id": 1,
        }])  # fmt: skip
        return int(conn.execute(text("SELECT id FROM alert")).scalar_one())


def test_the_api_audits_alerts_as_the_calling_account(api: Api) -> None:
    _, ops = add_account(api.engine, "ops", Role.ADMIN, actor="test")
    _, ann = add_account(api.engine, "ann", Role.ANALYST, actor="test")
    alert_id = one_alert(api.engine)
    base = f"/api/v1/discovery/alerts/{alert_id}"
    assert api.client.post(f"{base}/acknowledge", headers=bearer(ann)).status_code == 403
    assert api.client.post(f"{base}/acknowledge", headers=bearer(ops)).status_code == 204
    assert api.client.post(f"{base}/close", headers=api.admin).status_code == 204
    assert (
        api.client.post("/api/v1/discovery/alerts/999/close", headers=api.admin).status_code == 404
    )
    (alert,) = api.client.get("/api/v1/discovery/alerts?status=closed", headers=bearer(ann)).json()
    assert alert["acknowledged_by"] == "admin"
    assert [(e.actor, e.action) for e in audit(api.engine, action="alert")] == [
        ("admin", "alert.close"), ("ops", "alert.acknowledge"),
    ]  # fmt: skip
