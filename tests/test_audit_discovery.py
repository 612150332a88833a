"""Discovery data in the audit log, on both back ends: a log upload that kept data and a
snapshot report deleted with its data are recorded with their actor (API account, CLI OS user
or --actor); an upload that kept nothing and the upload path's own cleanup record nothing. The
audit log's retention: the daemon prunes rows past ENFORCER_AUDIT_RETENTION_DAYS and records
that it did (0 keeps everything), and `enforcer audit prune` does it by hand."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from typer.testing import CliRunner

from enforcer.cli import app
from enforcer.config import Settings
from enforcer.pipeline.daemon import Daemon
from enforcer.store.audit import AuditEntry, list_audit, record_edit
from enforcer.store.named_reports import delete_report
from enforcer.store.tables.accounts import AUDIT

SQUID = Path(__file__).resolve().parents[1] / "examples" / "logs" / "squid-access.log"
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def audit(engine: Engine, action: str | None = None) -> list[AuditEntry]:
    with engine.connect() as conn:
        return list_audit(conn, action=action)


def test_cli_uploads_and_deletions_are_audited_as_the_actor(
    db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENFORCER_DATABASE_URL", db_url)
    cli = CliRunner()
    done = cli.invoke(
        app, ["--actor", "dana", "discovery", "upload", "--format", "squid", "--report", "proxy",
              str(SQUID)],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    gone = cli.invoke(app, ["--actor", "erin", "discovery", "delete", "proxy", "--yes"])
    assert gone.exit_code == 0, gone.output
    deleted, uploaded = audit(engine, "discovery")
    assert (uploaded.actor, uploaded.action, uploaded.target) == (
        "dana",
        "discovery.upload",
        "proxy",
    )
    assert (deleted.actor, deleted.action, deleted.target) == ("erin", "discovery.delete", "proxy")
    assert deleted.details["files"] == [str(SQUID)]
    # Deleting what is not there changes nothing and records nothing.
    missing = cli.invoke(app, ["--actor", "erin", "discovery", "delete", "proxy", "--yes"])
    assert missing.exit_code == 1 and len(audit(engine, "discovery")) == 2


def test_the_upload_paths_own_cleanup_is_not_a_recorded_deletion(
    db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENFORCER_DATABASE_URL", db_url)
    cli = CliRunner()
    done = cli.invoke(
        app, ["discovery", "upload", "--format", "squid", "--report", "r", str(SQUID)]
    )
    assert done.exit_code == 0, done.output
    delete_report(engine, "r")  # as the upload path does for an upload it refused
    assert [e.action for e in audit(engine, "discovery")] == ["discovery.upload"]


def _aged(engine: Engine, days: float, action: str = "console.tag") -> None:
    """A row recorded `days` before NOW."""
    record_edit(engine, actor="old", action=action, target=f"{days}d")
    with engine.begin() as conn:
        conn.execute(
            update(AUDIT)
            .where(AUDIT.c.target == f"{days}d")
            .values(time=NOW - dt.timedelta(days=days))
        )


def test_the_daemon_prunes_the_audit_log_past_its_retention_and_says_so(
    tmp_path: Path, db_url: str, engine: Engine
) -> None:
    for days in (800, 731, 729, 10):
        _aged(engine, days)
    policies = tmp_path / "policies"
    policies.mkdir()
    keep_all = Daemon(
        Settings(database_url=db_url, policy_dir=policies, audit_retention_days=0), engine
    )
    keep_all.expire_tick(NOW)
    assert len(audit(engine)) == 4
    keep_all.lock.release()

    daemon = Daemon(Settings(database_url=db_url, policy_dir=policies), engine)  # 730 days
    daemon.expire_tick(NOW)
    pruned, *kept = audit(engine)
    assert [e.target for e in kept] == ["10d", "729d"]
    assert (pruned.actor, pruned.action, pruned.details["deleted"]) == ("daemon", "audit.prune", 2)
    assert pruned.details["older_than"].startswith("2024-11-25")
    daemon.expire_tick(NOW)  # nothing more to prune: no second row
    assert len(audit(engine)) == 3
    daemon.lock.release()


def test_audit_prune_by_hand_records_who_pruned(
    db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENFORCER_DATABASE_URL", db_url)
    _aged(engine, 400)
    _aged(engine, 5)
    cli = CliRunner()
    bad = cli.invoke(app, ["audit", "prune", "--older-than", "soon", "--yes"])
    assert bad.exit_code == 2 and "--older-than" in bad.output
    done = cli.invoke(app, ["--actor", "ops", "audit", "prune", "--older-than", "100d", "--yes"])
    assert done.exit_code == 0 and "Deleted 1 change(s)" in done.output, done.output
    pruned, kept = audit(engine)
    assert (pruned.actor, pruned.action, pruned.details["deleted"]) == ("ops", "audit.prune", 1)
    assert kept.target == "5d"
