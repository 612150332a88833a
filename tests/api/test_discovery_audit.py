"""Uploads and report deletions through the API are audited as the account that made them; an
upload that kept nothing (the same content again, a wrong format) records nothing. On both back
ends."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from enforcer.store.audit import AuditEntry, list_audit
from tests.api.conftest import Api

SQUID = Path(__file__).resolve().parents[2] / "examples" / "logs" / "squid-access.log"


def audit(engine: Engine, action: str | None = None) -> list[AuditEntry]:
    with engine.connect() as conn:
        return list_audit(conn, action=action)


def test_api_uploads_and_deletions_are_audited_as_the_account(api: Api, engine: Engine) -> None:
    done = api.client.post(
        "/api/v1/discovery/upload?format=squid&report=week 48", content=SQUID.read_bytes(),
        headers=api.admin,
    )  # fmt: skip
    assert done.status_code == 200, done.text
    records = done.json()["records"]
    (entry,) = audit(engine, "discovery")
    assert (entry.actor, entry.action, entry.target) == ("admin", "discovery.upload", "week 48")
    assert entry.details["records"] == records > 0 and entry.details["format"] == "squid"

    # The same content again keeps nothing: no row.
    again = api.client.post(
        "/api/v1/discovery/upload?format=squid&report=again", content=SQUID.read_bytes(),
        headers=api.admin,
    )  # fmt: skip
    assert again.status_code == 200 and again.json()["records"] == 0, again.text
    # A wrong format is refused (422) and keeps nothing: no row.
    wrong = api.client.post(
        "/api/v1/discovery/upload?format=zeek-http", content=SQUID.read_bytes(), headers=api.admin
    )
    assert wrong.status_code == 422, wrong.text
    assert len(audit(engine, "discovery")) == 1

    gone = api.client.delete("/api/v1/discovery/reports/week 48", headers=api.admin)
    assert gone.status_code == 204, gone.text
    deleted, uploaded = audit(engine, "discovery")
    assert (deleted.actor, deleted.action, deleted.target) == (
        "admin",
        "discovery.delete",
        "week 48",
    )
    assert deleted.details["records"] == records and uploaded.action == "discovery.upload"
