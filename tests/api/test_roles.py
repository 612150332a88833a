"""Accounts and roles on the admin API: an analyst reads and exports, and gets 403 naming the
admin role on every changing route; an admin's changes each write one audit row naming the
account; the audit log is exported as JSON and CSV (formulas neutralised)."""

from __future__ import annotations

import csv
import importlib
import io
import pkgutil
import re
from typing import Any

from fastapi.routing import APIRoute
from sqlalchemy import Engine

from enforcer.api import routers
from enforcer.api.deps import READING_METHODS, require_account
from enforcer.models import Action, Indicator
from enforcer.store.accounts import Role, add_account, disable_account, rotate_token
from enforcer.store.audit import AuditEntry, list_audit
from enforcer.store.manual import add_manual
from tests.api.conftest import Api, bearer


def audit(engine: Engine) -> list[AuditEntry]:
    with engine.connect() as conn:
        return list_audit(conn)


def _needs_account(route: APIRoute) -> bool:
    pending = list(route.dependant.dependencies)
    while pending:
        dep = pending.pop()
        if dep.call is require_account:
            return True
        pending.extend(dep.dependencies)
    return False


def account_routes() -> list[tuple[str, str]]:
    """Every (method, path) of the admin API (every router module's), path parameters filled."""
    out = []
    for info in pkgutil.iter_modules(routers.__path__):
        module = importlib.import_module(f"{routers.__name__}.{info.name}")
        for route in module.router.routes:
            if isinstance(route, APIRoute) and _needs_account(route):
                path = re.sub(r"\{\w+\}", "1", route.path)
                out.extend((method, path) for method in sorted(route.methods or ()))
    return out


def test_an_analyst_reads_every_route_and_is_refused_every_change(api: Api) -> None:
    _, token = add_account(api.engine, "ann", Role.ANALYST, actor="test")
    routes = account_routes()
    changing = [(m, p) for m, p in routes if m not in READING_METHODS]
    assert {("POST", "/api/v1/indicators"), ("PUT", "/api/v1/devices/1/groups"),
            ("POST", "/api/v1/discovery/alerts/1/acknowledge")} <= set(changing)  # fmt: skip
    for method, path in changing:
        refused = api.client.request(method, path, headers=bearer(token), json={})
        assert refused.status_code == 403, (method, path, refused.text)
        assert "needs the admin role" in refused.json()["detail"], (method, path)
        assert "'ann' has the analyst role" in refused.json()["detail"]
    for method, path in routes:
        if method in READING_METHODS:
            read = api.client.request(method, path, headers=bearer(token))
            assert read.status_code not in (401, 403), (method, path, read.text)
    assert {e.action for e in audit(api.engine)} == {"account.add"}  # nothing refused was recorded


def test_each_admin_change_is_one_audit_row_naming_the_account(api: Api) -> None:
    _, ops = add_account(api.engine, "ops", Role.ADMIN, actor="test")
    _, ann = add_account(api.engine, "ann", Role.ANALYST, actor="test")
    before = len(audit(api.engine))
    body = {"indicatorValue": "paste.example", "action": "Block"}
    assert api.client.post("/api/v1/indicators", json=body, headers=bearer(ann)).status_code == 403
    created = api.client.post("/api/v1/indicators", json=body, headers=bearer(ops))
    assert created.status_code == 201 and created.json()["createdBy"] == "ops"
    assert api.client.post("/api/v1/indicators", json=body, headers=bearer(ops)).status_code == 409
    indicator_id = created.json()["id"]
    assert (
        api.client.delete(f"/api/v1/indicators/{indicator_id}", headers=api.admin).status_code
        == 204
    )
    api.enroll("laptop-1")
    groups = {"groups": ["eng"]}
    assert (
        api.client.put(
            "/api/v1/devices/laptop-1/groups", json=groups, headers=bearer(ops)
        ).status_code
        == 204
    )
    assert (
        api.client.put(
            "/api/v1/devices/nobody/groups", json=groups, headers=bearer(ops)
        ).status_code
        == 404
    )
    assert (
        api.client.post("/api/v1/devices/laptop-1/approve", headers=bearer(ops)).status_code == 204
    )
    changes = [(e.actor, e.action, e.target) for e in reversed(audit(api.engine)[:-before])]
    assert changes == [
        ("ops", "indicator.add", "paste.example"),
        ("admin", "indicator.remove", "paste.example"),
        ("ops", "device.groups", "laptop-1"),
        ("ops", "device.approve", "laptop-1"),
    ]  # fmt: skip


def test_a_disabled_account_or_a_replaced_token_is_refused(api: Api) -> None:
    _, old = add_account(api.engine, "ops", Role.ADMIN, actor="test")
    assert api.client.get("/api/v1/devices", headers=bearer(old)).status_code == 200
    new = rotate_token(api.engine, "ops", actor="test")
    assert api.client.get("/api/v1/devices", headers=bearer(old)).status_code == 401
    assert api.client.get("/api/v1/devices", headers=bearer(new)).status_code == 200
    disable_account(api.engine, "ops", actor="test")
    refused = api.client.get("/api/v1/devices", headers=bearer(new))
    assert refused.status_code == 401 and "disabled" in refused.json()["detail"]


def test_the_audit_log_is_exported_as_json_and_csv(api: Api) -> None:
    _, ann = add_account(api.engine, "ann", Role.ANALYST, actor="root")
    formula = '=HYPERLINK("http://evil.example","x")'
    add_manual(api.engine, Indicator(value="a.example", action=Action.BLOCK), actor=formula)
    add_manual(api.engine, Indicator(value="b.example", action=Action.WARN), actor="bob")
    listed: list[dict[str, Any]] = api.client.get("/api/v1/audit", headers=bearer(ann)).json()
    assert [e["action"] for e in listed] == ["indicator.add", "indicator.add", "account.add"]
    assert listed[0]["actor"] == "bob" and listed[0]["details"]["action"] == "Warn"
    assert listed[0]["time"].endswith("Z")
    only = api.client.get(
        "/api/v1/audit", params={"actor": "root", "action": "account", "since": "1h"},
        headers=bearer(ann),
    ).json()  # fmt: skip
    assert [(e["actor"], e["target"]) for e in only] == [("root", "ann")]
    exported = api.client.get("/api/v1/audit", params={"format": "csv"}, headers=bearer(ann))
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["actor"] for r in rows] == ["bob", "'" + formula, "root"]
    assert '"action":"Block"' in rows[1]["details"]
    for bad in ({"since": "last week"}, {"action": "indicator.drop"}):
        refused = api.client.get("/api/v1/audit", params=bad, headers=bearer(ann))
        assert refused.status_code == 422 and next(iter(bad)) in refused.json()["detail"]
    empty = api.client.get(
        "/api/v1/audit", params={"format": "csv", "actor": "x"}, headers=api.admin
    )
    assert empty.text.startswith("id,time,actor,action,target,details")
