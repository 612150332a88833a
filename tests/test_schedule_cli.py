"""`enforcer plan` and `enforcer explain` name a schedule and say when it next changes (a real
process, on SQLite and PostgreSQL; the window is set relative to the real clock)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tests.conftest import write_policy
from tests.test_cli import run


@pytest.fixture
def env(db_url: str) -> dict[str, str]:
    return {"ENFORCER_DATABASE_URL": db_url}


def _policy(directory: Path) -> dt.datetime:
    """A daily UTC window starting two hours from now; returns its start (the next edge)."""
    now = dt.datetime.now(dt.UTC)
    start = (now + dt.timedelta(hours=2)).replace(second=0, microsecond=0)
    end = start + dt.timedelta(hours=1)
    write_policy(
        directory,
        "a.yaml",
        f"""
        schedules:
          - name: evenings
            timezone: UTC
            windows:
              - from: "{start:%H:%M}"
                to: "{end:%H:%M}"
        apps:
          - app: tiktok
            tag: unsanctioned
            schedule: evenings
          - app: mega
            tag: unsanctioned
        """,
    )
    return start


def test_explain_names_the_schedule_and_its_next_change(
    tmp_path: Path, env: dict[str, str]
) -> None:
    start = _policy(tmp_path / "policies")
    report = json.loads(run(["explain", "www.tiktok.com", "--json"], env, tmp_path).stdout)
    [entry] = report["policy"]["schedules"]
    assert entry["schedule"] == "evenings" and entry["in_force"] is False
    assert dt.datetime.fromisoformat(entry["next_change"]) == start
    assert entry["origin"] == "policies/a.yaml:8"
    human = run(["explain", "tiktok.com"], env, tmp_path).stdout
    assert (
        f"schedule: apps 'tiktok' at policies/a.yaml:8 follows 'evenings': not in force now, "
        f"starts {start:%a %Y-%m-%d %H:%M} UTC" in human
    )
    # An app without a schedule says nothing about one.
    assert "schedule" not in run(["explain", "mega.nz"], env, tmp_path).stdout


def test_plan_lists_scheduled_entries_with_their_next_edge(
    tmp_path: Path, env: dict[str, str]
) -> None:
    start = _policy(tmp_path / "policies")
    planned = run(["plan"], env, tmp_path)
    assert planned.returncode == 0, planned.stderr
    lines = planned.stdout.splitlines()
    assert lines[0].startswith("Scheduled entries")
    assert lines[1] == (
        f"  apps 'tiktok' [policies/a.yaml:8]: schedule 'evenings', not in force, starts "
        f"{start:%a %Y-%m-%d %H:%M} UTC ({start:%Y-%m-%d %H:%M} UTC)"
    )
    assert "+ mega.nz" in planned.stdout and "tiktok.com" not in planned.stdout.split("\n", 3)[3]
    assert lines[-1].startswith("Plan: ")
