"""Sinks as the daemon and the CLI run them: from the store, by name, one failure isolated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine

from enforcer.cli.sinks import sink_plan_text
from enforcer.models import Action, Indicator, Severity
from enforcer.pipeline.run import run_sinks
from enforcer.store.manual import add_manual

from .helpers import settings


def fill(engine: Engine) -> None:
    for value, action, scope in (
        ("blocked.example", Action.BLOCK, ""),
        ("ok.blocked.example", Action.ALLOWED, ""),
        ("eng-only.example", Action.BLOCK, "engineering"),
    ):
        indicator = Indicator(value, action, Severity.HIGH, scope=scope, title=value)
        add_manual(engine, indicator, actor="test")


def test_run_sinks_writes_every_configured_sink_and_isolates_failures(
    engine: Engine, tmp_path: Path
) -> None:
    fill(engine)
    cfg = settings(
        sinks=["rpz", "hosts", "nosuch"],
        rpz_path=tmp_path / "rpz.zone",
        hosts_path=tmp_path / "hosts",
    )
    results = run_sinks(cfg, engine)
    assert [(r.sink, r.ok) for r in results] == [("rpz", True), ("hosts", True), ("nosuch", False)]
    assert "unknown sink 'nosuch'" in results[2].error
    assert results[0].revision == 3 and results[0].created == 2
    zone = (tmp_path / "rpz.zone").read_text()
    assert "ok.blocked.example CNAME rpz-passthru.\n" in zone and "eng-only" not in zone
    assert (tmp_path / "hosts").read_text().splitlines()[1:] == ["0.0.0.0 blocked.example"]

    assert [r.created + r.updated + r.deleted for r in run_sinks(cfg, engine)[:2]] == [0, 0]
    assert run_sinks(settings(), engine) == []


def test_sink_plan_text(engine: Engine, tmp_path: Path) -> None:
    fill(engine)
    cfg = settings(rpz_path=tmp_path / "rpz.zone")
    text = sink_plan_text("rpz", cfg, engine)
    assert text.splitlines()[0] == f"Sink rpz -> {tmp_path / 'rpz.zone'} at revision 3 (2 entries)"
    assert "  + blocked.example" in text and "CNAME ." in text and "# Block (manual)" in text
    assert text.endswith("Plan: 2 to add, 0 to change, 0 to destroy.")
    run_sinks(settings(sinks=["rpz"], rpz_path=tmp_path / "rpz.zone"), engine)
    assert "No changes." in sink_plan_text("rpz", cfg, engine)


def test_the_cli_plans_and_applies_a_sink(db_url: str, engine: Engine, tmp_path: Path) -> None:
    fill(engine)
    env = {
        **os.environ,
        "ENFORCER_DATABASE_URL": db_url,
        "ENFORCER_HOSTS_PATH": str(tmp_path / "h"),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "enforcer", "sinks", *args],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    planned = run("plan", "hosts", "--detailed-exitcode")
    assert planned.returncode == 2, planned.stderr
    assert "+ blocked.example" in planned.stdout
    applied = run("apply", "hosts", "--yes")
    assert applied.returncode == 0, applied.stderr
    assert "Applied to" in applied.stdout and (tmp_path / "h").exists()
    assert run("plan", "hosts", "--detailed-exitcode").returncode == 0
    listed = run("list")
    assert "hosts" in listed.stdout and str(tmp_path / "h") in listed.stdout
    unknown = run("plan", "nosuch")
    assert unknown.returncode == 1 and "unknown sink 'nosuch'" in unknown.stderr
