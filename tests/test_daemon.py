"""The daemon: applies on change only, survives a bad policy push, one leader, stops on SIGTERM."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import structlog.testing
from sqlalchemy import Engine

from enforcer.config import Settings
from enforcer.models import Action, Indicator
from enforcer.pipeline.daemon import Daemon
from enforcer.store.lookup import list_indicators
from enforcer.store.manual import add_manual
from tests.conftest import write_policy

GOOD = "apps:\n  - {app: pastebin, tag: unsanctioned}\n"


def values(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {s.indicator.value for s in list_indicators(conn, limit=1000)}


def make_daemon(tmp_path: Path, db_url: str, engine: Engine) -> Daemon:
    settings = Settings(database_url=db_url, policy_dir=tmp_path / "policies", watch_policies=False)
    return Daemon(settings, engine)


def test_applies_only_when_something_changed(tmp_path: Path, db_url: str, engine: Engine) -> None:
    write_policy(tmp_path / "policies", "a.yaml", GOOD)
    daemon = make_daemon(tmp_path, db_url, engine)
    first = daemon.reconcile_tick()
    assert first.outcome == "applied" and first.revision == 1 and values(engine) == {"pastebin.com"}
    assert daemon.reconcile_tick().outcome == "unchanged"
    # A manual indicator moves the revision: the daemon re-plans, finds nothing to do.
    add_manual(engine, Indicator(value="x.example", action=Action.BLOCK), actor="t")
    assert daemon.reconcile_tick().outcome == "no_changes"
    daemon.lock.release()


def test_bad_policy_push_keeps_the_last_good_state(
    tmp_path: Path, db_url: str, engine: Engine
) -> None:
    policies = tmp_path / "policies"
    write_policy(policies, "a.yaml", GOOD)
    daemon = make_daemon(tmp_path, db_url, engine)
    assert daemon.reconcile_tick().outcome == "applied"
    write_policy(
        policies,
        "a.yaml",
        "apps:\n  - {app: pastebin, tag: unsanctioned}\n  - {app: nope-app, tag: unsanctioned}\n",
    )
    with structlog.testing.capture_logs() as logged:
        assert daemon.reconcile_tick().outcome == "policy_error"
        assert daemon.reconcile_tick().outcome == "policy_error"  # retried each tick, logged once
    assert values(engine) == {"pastebin.com"}
    [event] = [e for e in logged if e["event"] == "policy_rejected"]
    assert event["log_level"] == "error"
    assert event["errors"][0]["field"] == "apps.app" and "nope-app" in event["errors"][0]["message"]
    write_policy(policies, "a.yaml", GOOD + "  - {app: rentry, tag: unsanctioned}\n")
    assert daemon.reconcile_tick().outcome == "applied"
    assert values(engine) == {"pastebin.com", "rentry.co", "rentry.org"}
    daemon.lock.release()


def test_only_one_daemon_applies_and_a_standby_takes_over(
    tmp_path: Path, db_url: str, engine: Engine
) -> None:
    write_policy(tmp_path / "policies", "a.yaml", GOOD)
    leader = make_daemon(tmp_path, db_url, engine)
    standby = make_daemon(tmp_path, db_url, engine)
    assert leader.reconcile_tick().outcome == "applied"
    assert standby.reconcile_tick().outcome == "standby"
    leader.lock.release()  # the leader stops (or dies: the lock goes with its connection/process)
    write_policy(tmp_path / "policies", "a.yaml", GOOD + "  - {app: rentry, tag: unsanctioned}\n")
    assert standby.reconcile_tick().outcome == "applied"
    assert leader.reconcile_tick().outcome == "standby"
    standby.lock.release()


def test_daemon_process_watches_policies_and_stops_on_sigterm(
    tmp_path: Path, db_url: str, engine: Engine
) -> None:
    policies = tmp_path / "policies"
    write_policy(policies, "a.yaml", GOOD)
    env = {**os.environ, "ENFORCER_DATABASE_URL": db_url, "ENFORCER_POLICY_DIR": str(policies),
           "ENFORCER_RECONCILE_INTERVAL": "3600"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "enforcer", "daemon"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        events = _read_events(proc, until="plan_applied")
        assert events[-1]["revision"] == 1
        write_policy(policies, "a.yaml", GOOD + "  - {app: rentry, tag: unsanctioned}\n")
        started = time.monotonic()
        events = _read_events(proc, until="plan_applied")
        assert time.monotonic() - started < 10  # the watcher triggers at once; the tick is an hour
        assert events[-1]["revision"] == 2 and events[-1]["create"] == 2
        proc.send_signal(signal.SIGTERM)
        events = _read_events(proc, until="daemon_stopped")
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert values(engine) == {"pastebin.com", "rentry.co", "rentry.org"}


def _read_events(proc: subprocess.Popen[str], until: str, timeout: float = 30) -> list[dict]:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    events = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"daemon exited before {until}: {events}")
        event = json.loads(line)  # every line is a JSON event: daemons log JSON
        events.append(event)
        if event["event"] == until:
            return events
    raise AssertionError(f"no {until} within {timeout}s: {events}")


def test_standby_takes_over_when_the_leader_is_killed(
    tmp_path: Path, db_url: str, engine: Engine
) -> None:
    policies = tmp_path / "policies"
    write_policy(policies, "a.yaml", GOOD)
    env = {**os.environ, "ENFORCER_DATABASE_URL": db_url, "ENFORCER_POLICY_DIR": str(policies),
           "ENFORCER_RECONCILE_INTERVAL": "1", "ENFORCER_WATCH_POLICIES": "false"}  # fmt: skip
    leader = subprocess.Popen(
        [sys.executable, "-m", "enforcer", "daemon"], env=env, stderr=subprocess.PIPE, text=True
    )
    standby = None
    try:
        _read_events(leader, until="plan_applied")
        standby = subprocess.Popen(
            [sys.executable, "-m", "enforcer", "daemon"], env=env, stderr=subprocess.PIPE, text=True
        )
        _read_events(standby, until="daemon_started")
        time.sleep(2.5)  # the standby ticks and finds the lock taken
        leader.kill()  # kill -9: no clean release; the lock goes with the process / its connection
        leader.wait(10)
        write_policy(policies, "a.yaml", GOOD + "  - {app: rentry, tag: unsanctioned}\n")
        events = _read_events(standby, until="plan_applied", timeout=30)
        assert events[-1]["revision"] == 2
    finally:
        for proc in (leader, standby):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert values(engine) == {"pastebin.com", "rentry.co", "rentry.org"}


def test_the_daemon_runs_the_configured_sinks_after_an_apply(
    tmp_path: Path, db_url: str, engine: Engine
) -> None:
    write_policy(tmp_path / "policies", "a.yaml", GOOD)
    hosts = tmp_path / "blocked.hosts"
    settings = Settings(database_url=db_url, policy_dir=tmp_path / "policies", watch_policies=False,
                        sinks=["hosts"], hosts_path=hosts)  # fmt: skip
    daemon = Daemon(settings, engine)
    assert daemon.reconcile_tick().outcome == "applied"
    assert "0.0.0.0 pastebin.com" in hosts.read_text()
    env = {**os.environ, "ENFORCER_DATABASE_URL": db_url, "ENFORCER_HOSTS_PATH": str(hosts)}
    preview = subprocess.run([sys.executable, "-m", "enforcer", "plan", "--sink", "hosts"], env=env,
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert preview.returncode == 0, preview.stderr
    assert "hosts" in preview.stdout
    daemon.lock.release()


def test_sinks_follow_the_store_revision_not_policy_changes(
    tmp_path: Path, db_url: str, engine: Engine
) -> None:
    """A manual indicator, an expiry or a sink that failed once reach the sink on the next tick."""
    write_policy(tmp_path / "policies", "a.yaml", GOOD)
    hosts = tmp_path / "blocked.hosts"
    hosts.write_text("127.0.0.1 localhost\n")  # not Enforcer's file: the hosts sink refuses it
    settings = Settings(database_url=db_url, policy_dir=tmp_path / "policies", watch_policies=False,
                        sinks=["hosts"], hosts_path=hosts)  # fmt: skip
    daemon = Daemon(settings, engine)
    assert daemon.reconcile_tick().outcome == "applied"
    assert hosts.read_text() == "127.0.0.1 localhost\n"

    hosts.unlink()  # the operator fixes the target: the next tick retries, no policy change needed
    assert daemon.reconcile_tick().outcome == "unchanged"
    assert "0.0.0.0 pastebin.com" in hosts.read_text()
    with structlog.testing.capture_logs() as logged:
        assert daemon.reconcile_tick().outcome == "unchanged"
    assert not [e for e in logged if e["event"].startswith("sink_")]  # up to date: not run again

    now = dt.datetime.now(dt.UTC)
    manual = Indicator(
        value="x.example", action=Action.BLOCK, expiration=now + dt.timedelta(hours=1)
    )
    add_manual(engine, manual, actor="t")
    assert daemon.reconcile_tick().outcome == "no_changes"
    assert "0.0.0.0 x.example" in hosts.read_text()

    assert daemon.expire_tick(now + dt.timedelta(hours=2)) == 1
    daemon.reconcile_tick()
    assert "x.example" not in hosts.read_text() and "0.0.0.0 pastebin.com" in hosts.read_text()
    daemon.lock.release()


def test_sighup_makes_the_daemon_reconcile_not_exit(tmp_path: Path, db_url: str) -> None:
    import signal

    policies = tmp_path / "policies"
    write_policy(policies, "a.yaml", GOOD)
    env = {**os.environ, "ENFORCER_DATABASE_URL": db_url, "ENFORCER_POLICY_DIR": str(policies),
           "ENFORCER_RECONCILE_INTERVAL": "3600", "ENFORCER_WATCH_POLICIES": "false"}  # fmt: skip
    daemon = subprocess.Popen(
        [sys.executable, "-m", "enforcer", "daemon"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        _read_events(daemon, until="plan_applied")
        write_policy(policies, "a.yaml", GOOD + "  - {app: rentry, tag: unsanctioned}\n")
        daemon.send_signal(signal.SIGHUP)
        events = _read_events(daemon, until="plan_applied", timeout=30)
        assert any(e.get("signal") == "SIGHUP" for e in events)
        assert daemon.poll() is None, "still running"
    finally:
        daemon.terminate()
        daemon.wait(15)


def test_the_daemon_refuses_a_mass_deletion_until_an_admin_applies_it(
    tmp_path: Path, db_url: str, engine: Engine
) -> None:
    """A policy file lost in a merge would unblock everything at once: the daemon keeps the
    store as it is, says so once, and the admin's own `enforcer apply` goes through."""
    policies = tmp_path / "policies"
    write_policy(policies, "a.yaml", GOOD + "  - {app: rentry, tag: unsanctioned}\n")
    daemon = make_daemon(tmp_path, db_url, engine)
    assert daemon.reconcile_tick().outcome == "applied"
    before = values(engine)
    assert before == {"pastebin.com", "rentry.co", "rentry.org"}
    write_policy(policies, "a.yaml", "apps: []\n")  # every indicator would go
    assert daemon.reconcile_tick().outcome == "refused"
    assert daemon.reconcile_tick().outcome == "refused"
    assert values(engine) == before, "nothing was deleted"
    env = {**os.environ, "ENFORCER_DATABASE_URL": db_url, "ENFORCER_POLICY_DIR": str(policies)}
    applied = subprocess.run(
        [sys.executable, "-m", "enforcer", "apply", "--yes"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    assert values(engine) == set()
    assert daemon.reconcile_tick().outcome in ("unchanged", "no_changes")
    daemon.lock.release()


def test_daemon_serve_exits_non_zero_when_its_port_is_taken(tmp_path: Path, db_url: str) -> None:
    import socket

    policies = tmp_path / "policies"
    write_policy(policies, "a.yaml", GOOD)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "ENFORCER_DATABASE_URL": db_url,
               "ENFORCER_ADMIN_TOKEN": "admin-token-for-the-check-0123456789",
               "ENFORCER_ENROLL_SECRET": "enrol-secret-for-the-check-0123456789"}  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "enforcer", "daemon", "--serve", "--port", str(port),
             "--policies", str(policies)],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"the API did not start on 127.0.0.1:{port}" in done.stderr
