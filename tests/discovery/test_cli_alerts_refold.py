"""`enforcer discovery upload` checks the policy repo's alert policies on the upload's data and
says how many alerts it opened; `enforcer discovery process` checks them on device events; the
alerts name the report whose data raised them; `enforcer discovery refold` says what it folded.
On both back ends."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from enforcer.catalog import Catalog
from enforcer.cli import app
from enforcer.store.alerts import list_alerts
from enforcer.store.events import EventRecord, store_batch
from tests.conftest import write_policy
from tests.discovery.test_refold import _roll_up_with_domains_kept

LOGS = Path(__file__).resolve().parents[2] / "examples" / "logs"


def _alerts(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return list_alerts(conn)


def test_the_upload_command_checks_the_policy_repos_alert_policies(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_policy(
        tmp_path / "policies",
        "alerts.yaml",
        """
        alert_policies:
          - name: blocked app hit
            when: blocked_app
        """,
    )
    monkeypatch.setenv("ENFORCER_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("ENFORCER_POLICY_DIR", str(tmp_path / "policies"))
    result = CliRunner().invoke(
        app, ["discovery", "upload", "--format", "squid", str(LOGS / "squid-access.log")]
    )
    assert result.exit_code == 0, result.output
    assert "Alert policies opened 3 alert(s)" in result.stdout
    assert {a["report"] for a in _alerts(engine)} == {"squid-access.log"}


def test_the_process_command_checks_the_alert_policies_on_device_events(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_policy(
        tmp_path / "policies",
        "alerts.yaml",
        """
        alert_policies:
          - name: blocked app hit
            when: blocked_app
        """,
    )
    now = dt.datetime.now(dt.UTC)
    blocked = EventRecord(
        now, "pc-1", "alice", "10.0.0.5", "g.api.mega.nz", "1.2.3.4", 443, 0, 0, "blocked",
        "mega.nz", "mega", "proxy",
    )  # fmt: skip
    store_batch(engine, device_id="dev-1", batch_id="b1", events=[blocked])
    monkeypatch.setenv("ENFORCER_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("ENFORCER_POLICY_DIR", str(tmp_path / "policies"))
    result = CliRunner().invoke(app, ["discovery", "process"])
    assert result.exit_code == 0 and "Processed 1 network events" in result.stdout, result.output
    (alert,) = _alerts(engine)
    assert (alert["policy"], alert["app_id"], alert["report"]) == (
        "blocked app hit", "mega", "endpoint events",
    )  # fmt: skip


def test_the_refold_command_says_what_it_folded(
    engine: Engine, catalog: Catalog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _roll_up_with_domains_kept(engine, catalog, dt.datetime.now(dt.UTC).timestamp() - 60)
    monkeypatch.setenv("ENFORCER_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("ENFORCER_POLICY_DIR", str(tmp_path))
    monkeypatch.delenv("ENFORCER_DISCOVERY_USER_DOMAINS", raising=False)
    first = CliRunner().invoke(app, ["discovery", "refold"])
    assert first.exit_code == 0, first.output
    assert "alice@contoso.com -> alice" in first.stdout
    assert "Folded 2 user name(s)" in first.stdout
    second = CliRunner().invoke(app, ["discovery", "refold"])
    assert "Nothing to refold" in second.stdout
