"""Accounts in the console: an analyst reads and exports and is refused every change (403
naming the admin role); an admin's changes are audited as the signed-in account; the audit page
filters, pages and exports; a disabled account or a replaced token ends the account's sessions."""

from __future__ import annotations

import csv
import io
import re

import httpx
from sqlalchemy import Engine

from enforcer.console.governance import current
from enforcer.console.tables import PAGE_SIZE
from enforcer.store.accounts import Role, add_account, disable_account, rotate_token
from enforcer.store.audit import AuditEntry, list_audit, record_change
from tests.console.conftest import ADMIN, Console
from tests.console.test_access import _console_routes, csrf_of, session_cookie, sign_in

SIGN_IN_AND_OUT = {"/console/login", "/console/logout"}


def audit(engine: Engine) -> list[AuditEntry]:
    with engine.connect() as conn:
        return list_audit(conn)


def signed_in(client: httpx.Client, token: str) -> dict[str, str]:
    response = sign_in(client, token)
    assert response.status_code == 303, response.text
    return session_cookie(response)


def test_an_analyst_reads_and_exports_and_is_refused_every_change(console: Console) -> None:
    _, token = add_account(console.engine, "ann", Role.ANALYST, actor="root")
    before = audit(console.engine)
    with console.client() as client:
        cookie = signed_in(client, token)
        alerts = client.get("/console/alerts", headers=cookie)
        assert alerts.status_code == 200 and "mega.nz" in alerts.text
        assert "ann (analyst)" in alerts.text and "Acknowledge" not in alerts.text
        assert (
            "Add a manual indicator" not in client.get("/console/indicators", headers=cookie).text
        )
        assert client.get("/console/apps?format=csv", headers=cookie).status_code == 200
        assert client.get("/console/audit", headers=cookie).status_code == 200
        csrf = csrf_of(alerts.text)
        changes = [p for m, p in _console_routes() if m == "POST" and p not in SIGN_IN_AND_OUT]
        assert {"/console/alerts/1/ack", "/console/governance/apply", "/console/indicators"} <= set(
            changes
        )
        for path in changes:
            refused = client.post(
                path, headers=cookie,
                data={"csrf": csrf, "tag": "unsanctioned", "domain": "x.example", "action": "Block"},
            )  # fmt: skip
            assert refused.status_code == 403, (path, refused.status_code)
            assert "needs the admin role" in refused.text and "ann" in refused.text, path
        out = client.post("/console/logout", headers=cookie, data={"csrf": csrf})
        assert out.status_code == 303
    assert audit(console.engine) == before
    assert not (console.policy_dir / "console.yaml").exists()


def test_console_changes_are_audited_as_the_signed_in_account(console: Console) -> None:
    _, token = add_account(console.engine, "ops", Role.ADMIN, actor="root")
    with console.client() as client:
        cookie = signed_in(client, token)
        csrf = csrf_of(client.get("/console/alerts", headers=cookie).text)
        acked = client.post("/console/alerts/1/ack", headers=cookie, data={"csrf": csrf})
        assert acked.status_code == 303
        tagged = client.post(
            "/console/apps/trello/tag", headers=cookie, data={"csrf": csrf, "tag": "unsanctioned"}
        )
        assert tagged.status_code == 303
        page = client.get("/console/governance", headers=cookie).text
        found = re.search(r'name="fingerprint" value="([^"]+)"', page)
        assert found is not None
        applied = client.post(
            "/console/governance/apply", headers=cookie,
            data={"csrf": csrf, "fingerprint": found.group(1)},
        )  # fmt: skip
        assert applied.status_code == 303, applied.text
        added = client.post(
            "/console/indicators", headers=cookie,
            data={"csrf": csrf, "domain": "paste.example", "action": "Block", "severity": "High"},
        )  # fmt: skip
        assert added.headers["location"].endswith("source=manual")
        newest = audit(console.engine)[:4]
        assert [(e.actor, e.action) for e in newest] == [
            ("ops", "indicator.add"), ("ops", "policy.apply"), ("ops", "console.tag"),
            ("ops", "alert.acknowledge"),
        ]  # fmt: skip
        assert [e.target for e in newest[::2]] == ["paste.example", "trello"]
        assert newest[1].details["created"] >= 1 and newest[3].target == "alert 1"
        assert "Set in the console by ops" in current(console.policy_dir)
        page = client.get("/console/audit?actor=ops&action=console", headers=cookie).text
        assert "<td>console.tag</td>" in page and "<td>trello</td>" in page
        assert "<td>indicator.add</td>" not in page
        exported = client.get("/console/audit?format=csv&actor=ops", headers=cookie)
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert [r["action"] for r in rows] == [e.action for e in newest]


def test_the_audit_page_is_paged_newest_first(console: Console) -> None:
    with console.engine.begin() as conn:
        for i in range(PAGE_SIZE + 2):
            record_change(conn, actor="bulk", action="device.approve", target=f"dev-{i:03d}")
    with console.client() as client:
        cookie = signed_in(client, ADMIN)
        first = client.get("/console/audit?actor=bulk", headers=cookie).text
        assert first.count("<td>bulk</td>") == PAGE_SIZE and 'rel="next"' in first
        assert first.index(f"dev-{PAGE_SIZE + 1:03d}") < first.index(f"dev-{PAGE_SIZE:03d}")
        second = client.get("/console/audit?actor=bulk&page=2", headers=cookie).text
        assert second.count("<td>bulk</td>") == 2 and 'rel="next"' not in second
        assert "<td>dev-000</td>" in second and 'rel="prev"' in second


def test_a_disabled_account_or_a_new_token_ends_its_sessions(console: Console) -> None:
    _, token = add_account(console.engine, "ops", Role.ADMIN, actor="root")
    with console.client() as client:
        cookie = signed_in(client, token)
        assert client.get("/console/audit", headers=cookie).status_code == 200
        new = rotate_token(console.engine, "ops", actor="root")
        assert client.get("/console/audit", headers=cookie).status_code == 303
        assert sign_in(client, token).status_code == 401
        cookie = signed_in(client, new)
        assert client.get("/console/audit", headers=cookie).status_code == 200
        disable_account(console.engine, "ops", actor="root")
        assert client.get("/console/audit", headers=cookie).status_code == 303
        assert sign_in(client, new).status_code == 401
