"""The CLI shows users and machines as the reports do: one user for the forms of a name, with
the forms listed; machines searched by address or user, with their addresses; DNS-only traffic
as queries; what the risk scale means. On both back ends."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from enforcer.catalog import load_catalog
from enforcer.cli import app
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.records import Record
from enforcer.store.rollups import merge_rollup


@pytest.fixture
def cli(engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> CliRunner:
    now = dt.datetime.now(dt.UTC).timestamp()
    aggregator = Aggregator(Attributor(load_catalog()))
    aggregator.add_all(
        [
            Record(now - 60, "www.dropbox.com", "10.1.2.3", "CONTOSO\\alice", "pc-01", bytes_up=5),
            Record(
                now - 30, "www.dropbox.com", "10.1.2.4", "alice@contoso.com", "pc-02", bytes_up=5
            ),
            *[Record(now - 10, "zoom.us", "10.1.9.9", "bob", "pc-03") for _ in range(4)],
        ]
    )
    merge_rollup(engine, aggregator.rollup())
    monkeypatch.setenv("ENFORCER_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("ENFORCER_POLICY_DIR", str(tmp_path))
    return CliRunner()


def test_a_user_by_any_form_with_the_forms_listed(cli: CliRunner) -> None:
    result = cli.invoke(app, ["discovery", "user", "alice", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["devices"] == ["pc-01", "pc-02"]
    assert [f["form"] for f in data["forms"]] == ["CONTOSO\\alice", "alice@contoso.com"]
    table = cli.invoke(app, ["discovery", "user", "ALICE@contoso.com"])
    assert table.exit_code == 0 and "CONTOSO\\alice, alice@contoso.com" in table.stdout


def test_machines_searched_by_address_and_user_with_their_addresses(cli: CliRunner) -> None:
    result = cli.invoke(app, ["discovery", "machines", "--search", "10.1.2.", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["device"]: r["ips"] for r in rows} == {"pc-01": ["10.1.2.3"], "pc-02": ["10.1.2.4"]}
    by_user = json.loads(cli.invoke(app, ["discovery", "machines", "-q", "bob", "--json"]).stdout)
    assert [r["device"] for r in by_user] == ["pc-03"]


def test_dns_only_traffic_shows_queries_and_the_risk_scale_is_explained(cli: CliRunner) -> None:
    result = cli.invoke(app, ["discovery", "apps"])
    assert result.exit_code == 0, result.output
    zoom = next(line for line in result.stdout.splitlines() if line.startswith("zoom"))
    assert "4 queries" in zoom
    assert "0 (lowest risk) to 10 (highest)" in result.stderr
