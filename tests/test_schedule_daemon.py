"""The daemon and schedules, on SQLite and PostgreSQL: the store follows a schedule's window
edges (with an injected clock), the next edge is an APScheduler job at its instant, and the
deletions at a window's end are not held back as a mass deletion."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from enforcer.config import Settings
from enforcer.pipeline.daemon import Daemon
from enforcer.store.lookup import list_indicators
from tests.conftest import write_policy

POLICY = """
schedules:
  - name: work-hours
    timezone: Europe/Berlin
    windows:
      - days: [mon, tue, wed, thu, fri]
        from: "09:00"
        to: "17:30"
apps:
  - app: tiktok
    tag: unsanctioned
    schedule: work-hours
"""


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)  # type: ignore[misc]


def values(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {s.indicator.value for s in list_indicators(conn, limit=1000)}


def test_the_store_follows_the_window_edges(tmp_path: Path, db_url: str, engine: Engine) -> None:
    write_policy(tmp_path / "policies", "a.yaml", POLICY)
    settings = Settings(database_url=db_url, policy_dir=tmp_path / "policies", watch_policies=False)
    daemon = Daemon(settings, engine)
    scheduler = BackgroundScheduler(timezone=dt.UTC)
    scheduler.start(paused=True)  # holds the jobs without running them: the test is the clock
    daemon.scheduler = scheduler
    try:
        # Wednesday 13 January 2027: 09:00 in Berlin is 08:00 UTC, 17:30 is 16:30 UTC.
        assert daemon.reconcile_tick(at(2027, 1, 13, 7, 0)).outcome == "no_changes"
        assert values(engine) == set()
        edge = scheduler.get_job("edge")
        assert edge is not None and edge.next_run_time == at(2027, 1, 13, 8, 0)
        assert edge.func == daemon.reconcile_tick  # a whole reconcile: store, then sinks
        assert daemon.reconcile_tick(at(2027, 1, 13, 7, 59, 59)).outcome == "unchanged"
        opened = daemon.reconcile_tick(at(2027, 1, 13, 8, 0))
        assert opened.outcome == "applied" and "tiktok.com" in values(engine)
        assert scheduler.get_job("edge").next_run_time == at(2027, 1, 13, 16, 30)
        assert daemon.reconcile_tick(at(2027, 1, 13, 12, 0)).outcome == "unchanged"
        # Every policy indicator goes at 17:30 (more than max_delete_share): the files did not
        # change, so it is the schedule, not a lost file, and it is applied.
        closed = daemon.reconcile_tick(at(2027, 1, 13, 16, 30))
        assert closed.outcome == "applied" and values(engine) == set()
        assert scheduler.get_job("edge").next_run_time == at(2027, 1, 14, 8, 0)
    finally:
        scheduler.shutdown(wait=False)
        daemon.lock.release()


def test_the_edges_follow_the_october_change(tmp_path: Path, db_url: str, engine: Engine) -> None:
    """Friday 29 October 2027 is summer time in Berlin (17:30 is 15:30 UTC); clocks go back on
    Sunday 31 October, so Monday's 09:00 is 08:00 UTC."""
    write_policy(tmp_path / "policies", "a.yaml", POLICY)
    settings = Settings(database_url=db_url, policy_dir=tmp_path / "policies", watch_policies=False)
    daemon = Daemon(settings, engine)
    scheduler = BackgroundScheduler(timezone=dt.UTC)
    scheduler.start(paused=True)
    daemon.scheduler = scheduler
    try:
        assert daemon.reconcile_tick(at(2027, 10, 29, 15, 29)).outcome == "applied"
        assert "tiktok.com" in values(engine)
        assert scheduler.get_job("edge").next_run_time == at(2027, 10, 29, 15, 30)
        assert daemon.reconcile_tick(at(2027, 10, 29, 15, 30)).outcome == "applied"
        assert values(engine) == set()
        assert scheduler.get_job("edge").next_run_time == at(2027, 11, 1, 8, 0)
        assert daemon.reconcile_tick(at(2027, 11, 1, 7, 59)).outcome == "unchanged"
        assert daemon.reconcile_tick(at(2027, 11, 1, 8, 0)).outcome == "applied"
        assert "tiktok.com" in values(engine)
    finally:
        scheduler.shutdown(wait=False)
        daemon.lock.release()
