"""The audit log and accounts in the store (SQLite, and PostgreSQL when configured): each audited
change writes exactly one row with its actor in its own transaction, a failed change writes none;
accounts keep only token hashes; the daemon's actor is the policy commit's author."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from enforcer.catalog import Catalog
from enforcer.config import Settings
from enforcer.decide.expand import expand
from enforcer.errors import StalePlanError
from enforcer.models import Action, Indicator
from enforcer.pipeline.author import policy_author
from enforcer.pipeline.daemon import Daemon
from enforcer.pipeline.run import apply, make_plan
from enforcer.policy.evaluate import compile_policy
from enforcer.policy.loader import load_policy_files
from enforcer.store.accounts import (
    AccountError,
    Role,
    account_for_token,
    add_account,
    disable_account,
    list_accounts,
    rotate_token,
)
from enforcer.store.alerts import acknowledge_alert, close_alert, insert_alerts
from enforcer.store.audit import AuditEntry, check_action_filter, list_audit, parse_since
from enforcer.store.devices import assign_groups, enroll_device
from enforcer.store.lookup import UnknownIndicatorError
from enforcer.store.manual import DuplicateIndicatorError, add_manual, delete_manual
from enforcer.store.trust import approve_device
from tests.conftest import write_policy

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def audit(engine: Engine, **filters: str) -> list[AuditEntry]:
    with engine.connect() as conn:
        return list_audit(conn, **filters)  # type: ignore[arg-type]


def test_a_policy_apply_records_its_actor_revision_and_counts_once(
    tmp_path: Path, catalog: Catalog, engine: Engine
) -> None:
    write_policy(tmp_path, "a.yaml", "apps:\n  - {app: megashare, tag: unsanctioned}\n")
    desired = expand(compile_policy(load_policy_files(tmp_path), catalog, NOW))
    plan = make_plan(engine, desired)
    revision = apply(engine, plan, actor="alice", details={"commit": "abc"})
    (entry,) = audit(engine)
    assert (entry.actor, entry.action, entry.target) == (
        "alice",
        "policy.apply",
        f"revision {revision}",
    )
    assert entry.details["revision"] == revision and entry.details["commit"] == "abc"
    assert (entry.details["created"], entry.details["deleted"]) == (2, 0)
    # A plan without changes makes no revision and no audit row; a stale plan fails with none.
    apply(engine, make_plan(engine, desired), actor="alice")
    with pytest.raises(StalePlanError):
        apply(engine, plan, actor="bob")
    assert len(audit(engine)) == 1


def test_manual_indicators_are_audited_and_a_failed_change_is_not(engine: Engine) -> None:
    ind = Indicator(value="files.example", action=Action.BLOCK, scope="eng")
    new_id, revision = add_manual(engine, ind, actor="alice")
    with pytest.raises(DuplicateIndicatorError):
        add_manual(engine, ind, actor="mallory")
    with pytest.raises(UnknownIndicatorError):
        delete_manual(engine, new_id + 100, actor="mallory")
    delete_manual(engine, new_id, actor="bob")
    removed, added = audit(engine)
    assert (added.actor, added.action, added.target) == ("alice", "indicator.add", "files.example")
    assert (
        added.details | {"id": new_id, "revision": revision, "scope": "eng", "action": "Block"}
        == added.details
    )
    assert (removed.actor, removed.action, removed.details["id"]) == (
        "bob",
        "indicator.remove",
        new_id,
    )
    assert not audit(engine, actor="mallory")


def test_device_changes_are_audited_only_when_the_device_exists(engine: Engine) -> None:
    enroll_device(
        engine, device_id="dev-1", hostname="pc-1", os="Linux", user="dave",
        local_ips=["10.0.0.1"], groups=["staff"],
    )  # fmt: skip
    assert assign_groups(engine, "dev-1", ["eng", "eng", "lab"], actor="carol") is not None
    assert assign_groups(engine, "nobody", ["eng"], actor="mallory") is None
    assert approve_device(engine, "dev-1", actor="dave")
    assert not approve_device(engine, "nobody", actor="mallory")
    entries = audit(engine)
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("dave", "device.approve", "dev-1"), ("carol", "device.groups", "dev-1"),
    ]  # fmt: skip
    assert entries[0].details == {"hostname": "pc-1"}
    assert entries[1].details == {"groups": ["eng", "lab"], "before": ["staff"]}
    assert [e.action for e in audit(engine, action="device")] == ["device.approve", "device.groups"]


def test_alerts_acknowledged_and_closed_are_audited_once_each(engine: Engine) -> None:
    with engine.begin() as conn:
        insert_alerts(conn, [{
            "time": NOW, "device_id": "pc-1", "user": "dave", "domain": "mega.nz",
            "indicator": "mega.nz", "app_id": "mega", "action": "blocked", "severity": "High",
            "status": "open", "event_id": 1,
        }])  # fmt: skip
        alert_id = int(conn.execute(text("SELECT id FROM alert")).scalar_one())
    assert acknowledge_alert(engine, alert_id, actor="alice")
    assert close_alert(engine, alert_id, actor="bob")
    assert not acknowledge_alert(engine, alert_id + 1, actor="mallory")
    closed, acked = audit(engine)
    assert (acked.actor, acked.action, acked.target) == (
        "alice",
        "alert.acknowledge",
        f"alert {alert_id}",
    )
    assert (closed.actor, closed.action, closed.details["before"]) == (
        "bob",
        "alert.close",
        "acknowledged",
    )
    assert closed.details["domain"] == "mega.nz" and closed.details["app_id"] == "mega"
    assert [e.action for e in audit(engine, action="alert")] == ["alert.close", "alert.acknowledge"]


def test_accounts_keep_only_a_token_hash_and_every_change_is_audited(engine: Engine) -> None:
    account, token = add_account(engine, "ann", Role.ANALYST, actor="root")
    assert account.role is Role.ANALYST and len(token) >= 40
    with engine.connect() as conn:
        stored = [tuple(map(str, r)) for r in conn.execute(text("SELECT * FROM account"))]
        assert account_for_token(conn, token) == list_accounts(conn)[0]
    assert not any(token in value for row in stored for value in row)
    for bad in ("admin", "Ann Smith", ""):
        with pytest.raises(AccountError):
            add_account(engine, bad, Role.ADMIN, actor="mallory")
    with pytest.raises(AccountError, match="exists already"):
        add_account(engine, "ann", Role.ADMIN, actor="mallory")
    new = rotate_token(engine, "ann", actor="root")
    with engine.connect() as conn:
        assert account_for_token(conn, token) is None
        assert account_for_token(conn, new) is not None
    disable_account(engine, "ann", actor="root")
    with pytest.raises(AccountError, match="disabled"):
        rotate_token(engine, "ann", actor="mallory")
    with engine.connect() as conn:
        found = account_for_token(conn, new)
    assert found is not None and found.disabled_at is not None and not found.can_change
    assert [(e.actor, e.action, e.target) for e in audit(engine)] == [
        ("root", "account.disable", "ann"), ("root", "account.rotate", "ann"),
        ("root", "account.add", "ann"),
    ]  # fmt: skip
    assert all(token not in str(e.details) and new not in str(e.details) for e in audit(engine))


def test_the_log_is_filtered_and_paged_newest_first(engine: Engine) -> None:
    for i in range(5):
        add_manual(engine, Indicator(value=f"n{i}.example", action=Action.BLOCK), actor=f"u{i % 2}")
    assert [e.target for e in audit(engine, actor="u0")] == [
        "n4.example",
        "n2.example",
        "n0.example",
    ]
    with engine.connect() as conn:
        page = list_audit(conn, limit=2, offset=2)
        assert [e.target for e in page] == ["n2.example", "n1.example"]
        assert list_audit(conn, since=NOW.replace(year=2100)) == []
        assert len(list_audit(conn, since=parse_since("1h"))) == 5


def test_since_and_action_filters_say_what_they_accept() -> None:
    assert parse_since("7d", NOW) == NOW - dt.timedelta(days=7)
    assert parse_since("30m", NOW) == NOW - dt.timedelta(minutes=30)
    assert parse_since("2026-12-01") == dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert parse_since("2026-12-01T09:30:00Z").hour == 9
    with pytest.raises(ValueError, match="30m, 24h, 7d"):
        parse_since("last week")
    assert check_action_filter("alert") == "alert"
    with pytest.raises(ValueError, match=r"indicator\.add"):
        check_action_filter("indicator.drop")


def _git(directory: Path, *args: str) -> None:
    env = {
        "GIT_AUTHOR_NAME": "Pat Policy", "GIT_AUTHOR_EMAIL": "pat@example.org",
        "GIT_COMMITTER_NAME": "Pat Policy", "GIT_COMMITTER_EMAIL": "pat@example.org",
        "HOME": str(directory), "PATH": "/usr/bin:/bin",
    }  # fmt: skip
    subprocess.run(["git", "-C", str(directory), *args], check=True, capture_output=True, env=env)


def test_the_daemon_actor_is_the_policy_commit_author(tmp_path: Path) -> None:
    assert policy_author(tmp_path).actor == "daemon"  # not a checkout
    write_policy(tmp_path, "a.yaml", "apps: []\n")
    _git(tmp_path, "init", "-q")
    assert policy_author(tmp_path).actor == "daemon"  # a checkout without commits
    _git(tmp_path, "add", "a.yaml")
    _git(tmp_path, "commit", "-q", "-m", "policy")
    author = policy_author(tmp_path)
    assert author.actor == "Pat Policy <pat@example.org>"
    assert len(author.details["commit"]) == 40 and author.details["applied_by"] == "daemon"


def test_daemon_applies_are_audited_as_the_commit_author_or_daemon(
    tmp_path: Path, db_url: str, engine: Engine
) -> None:
    policies = tmp_path / "policies"
    write_policy(policies, "a.yaml", "apps:\n  - {app: pastebin, tag: unsanctioned}\n")
    daemon = Daemon(
        Settings(database_url=db_url, policy_dir=policies, watch_policies=False), engine
    )
    assert daemon.reconcile_tick().outcome == "applied"
    _git(policies, "init", "-q")
    write_policy(policies, "a.yaml", "apps:\n  - {app: pastebin, tag: monitored}\n")
    _git(policies, "add", "a.yaml")
    _git(policies, "commit", "-q", "-m", "monitor pastebin")
    assert daemon.reconcile_tick().outcome == "applied"
    assert daemon.reconcile_tick().outcome == "unchanged"
    daemon.lock.release()
    committed, plain = audit(engine)
    assert (plain.actor, plain.action, plain.details["revision"]) == ("daemon", "policy.apply", 1)
    assert (committed.actor, committed.details["revision"]) == ("Pat Policy <pat@example.org>", 2)
    assert committed.details["applied_by"] == "daemon" and len(committed.details["commit"]) == 40
