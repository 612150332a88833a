"""`enforcer sinks check`: each sink's live content against the store, drift listed and repaired
(by the CLI on demand, by the daemon on a schedule, exported as metrics); and the traffic and
risk ranking a limited sink gets from the store."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from enforcer.catalog import load_catalog
from enforcer.config import Settings
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.records import Record
from enforcer.models import Action, Indicator, Severity
from enforcer.pipeline.daemon import Daemon
from enforcer.pipeline.metrics import REGISTRY
from enforcer.pipeline.run import check_sinks, run_sinks, sink_ranking
from enforcer.store.manual import add_manual
from enforcer.store.rollups import merge_rollup

from .defender_fake import CLIENT_ID, CLIENT_SECRET, FakeDefender, Tenant
from .helpers import settings


def fill(engine: Engine) -> None:
    for value, action in (
        ("blocked.example", Action.BLOCK),
        ("also-blocked.example", Action.BLOCK),
        ("ok.blocked.example", Action.ALLOWED),
        ("warned.example", Action.WARN),
    ):
        add_manual(engine, Indicator(value, action, Severity.HIGH, title=value), actor="test")


def file_settings(tmp_path: Path, **fields: object) -> Settings:
    return settings(
        sinks=["rpz", "hosts", "dnsmasq"],
        rpz_path=tmp_path / "rpz.zone",
        hosts_path=tmp_path / "hosts",
        dnsmasq_path=tmp_path / "dnsmasq.conf",
        **fields,
    )


def drift_of(checks: list) -> dict[str, list[tuple[str, str]]]:  # type: ignore[type-arg]
    return {c.sink: [(d.action.value, d.name) for d in c.drift] for c in checks}


def test_file_sinks_drift_is_listed_then_repaired(engine: Engine, tmp_path: Path) -> None:
    fill(engine)
    cfg = file_settings(tmp_path)
    assert all(r.ok for r in run_sinks(cfg, engine))
    assert all(c.in_sync for c in check_sinks(cfg, engine))

    zone = tmp_path / "rpz.zone"
    kept = [line for line in zone.read_text().splitlines(True) if "also-blocked" not in line]
    zone.write_text("".join(kept))
    with (tmp_path / "hosts").open("a") as hosts:
        hosts.write("0.0.0.0 sneaked-in.example\n")
    dnsmasq = tmp_path / "dnsmasq.conf"
    dnsmasq.write_text(
        dnsmasq.read_text().replace("/blocked.example/0.0.0.0", "/blocked.example/10.1.1.1")
    )

    checks = check_sinks(cfg, engine)
    assert drift_of(checks) == {
        "rpz": [("+", "also-blocked.example")],
        "hosts": [("-", "sneaked-in.example")],
        "dnsmasq": [("~", "blocked.example")],
    }
    assert [c.in_sync for c in checks] == [False, False, False]
    assert (checks[2].drift[0].before, checks[2].drift[0].after) == (
        "address 10.1.1.1",
        "address 0.0.0.0",
    )

    repaired = check_sinks(cfg, engine, repair=True)
    assert all(c.repaired is not None and c.repaired.ok for c in repaired)
    assert all(c.in_sync for c in check_sinks(cfg, engine))
    assert "sneaked-in" not in (tmp_path / "hosts").read_text()


def test_a_sink_that_cannot_be_read_is_an_error_not_a_crash(engine: Engine, tmp_path: Path) -> None:
    fill(engine)
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n")  # not ours
    [check] = check_sinks(file_settings(tmp_path), engine, ["hosts"])
    assert not check.in_sync and "refusing to overwrite" in check.error


@pytest.fixture
def tenant() -> Tenant:
    return Tenant(page_size=500)


@pytest.fixture
def fake(tenant: Tenant) -> Iterator[FakeDefender]:
    server = FakeDefender(tenant)
    yield server
    server.stop()


def defender_settings(fake: FakeDefender, tmp_path: Path) -> Settings:
    return settings(
        sinks=["defender"],
        policy_dir=tmp_path / "policies",
        defender_state_dir=tmp_path / "state",
        defender_tenant_url=fake.url,
        defender_token_url=f"{fake.url}/oauth2/v2.0/token",
        defender_client_id=CLIENT_ID,
        defender_client_secret=CLIENT_SECRET,
        defender_calls_per_minute=10_000,
    )


def test_the_defender_tenant_drift_is_found_and_the_daemon_repairs_it(
    engine: Engine, tmp_path: Path, tenant: Tenant, fake: FakeDefender
) -> None:
    fill(engine)
    cfg = defender_settings(fake, tmp_path)
    assert all(r.ok for r in run_sinks(cfg, engine))
    assert all(c.in_sync for c in check_sinks(cfg, engine))

    # Someone deletes one of ours in the portal and turns another into an allow.
    gone = tenant.by_value("also-blocked.example")
    assert gone is not None
    tenant.remove(gone["id"])
    changed = tenant.by_value("warned.example")
    assert changed is not None
    changed["action"] = "Allowed"
    assert drift_of(check_sinks(cfg, engine)) == {
        "defender": [("+", "also-blocked.example"), ("~", "warned.example")]
    }

    daemon = Daemon(cfg, engine)
    [check] = daemon.check_tick()
    assert check.repaired is not None and check.repaired.ok
    assert REGISTRY.get_sample_value("enforcer_sink_drift_entries", {"sink": "defender"}) == 2
    repaired = REGISTRY.get_sample_value(
        "enforcer_sink_checks_total", {"sink": "defender", "outcome": "repaired"}
    )
    assert repaired is not None and repaired >= 1
    restored = tenant.by_value("warned.example")
    assert restored is not None and restored["action"] == "Warn"
    assert tenant.by_value("also-blocked.example") is not None

    [again] = daemon.check_tick()
    assert again.in_sync
    assert REGISTRY.get_sample_value("enforcer_sink_drift_entries", {"sink": "defender"}) == 0


def test_the_cli_check_exits_2_on_drift_and_lists_it(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    fill(engine)
    cfg = file_settings(tmp_path)
    run_sinks(cfg, engine)
    (tmp_path / "hosts").write_text((tmp_path / "hosts").read_text() + "0.0.0.0 extra.example\n")
    env = {
        **os.environ,
        "ENFORCER_DATABASE_URL": db_url,
        "ENFORCER_SINKS": "rpz,hosts",
        "ENFORCER_RPZ_PATH": str(tmp_path / "rpz.zone"),
        "ENFORCER_HOSTS_PATH": str(tmp_path / "hosts"),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "enforcer", "sinks", "check", *args],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    found = run()
    assert found.returncode == 2, found.stderr
    lines = found.stdout.splitlines()
    assert lines[0] == f"rpz -> {tmp_path / 'rpz.zone'}: in sync with the store at revision 4"
    assert lines[1] == (
        f"hosts -> {tmp_path / 'hosts'}: DRIFT: 1 entries differ from the store at revision 4"
    )
    assert lines[2].split() == [
        "-",
        "extra.example",
        "in",
        "the",
        "target",
        "(0.0.0.0),",
        "not",
        "in",
        "the",
        "store",
    ]
    as_json = json.loads(run("hosts", "--json").stdout)
    assert as_json[0]["drift"] == [
        {"action": "-", "name": "extra.example", "target": "0.0.0.0", "store": None}
    ]
    repaired = run("hosts", "--repair")
    assert (
        repaired.returncode == 2 and "repaired: 0 added, 0 changed, 1 destroyed" in repaired.stdout
    )
    assert run().returncode == 0
    nothing = subprocess.run(
        [sys.executable, "-m", "enforcer", "sinks", "check"],
        env={**env, "ENFORCER_SINKS": ""}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert nothing.returncode == 1 and "no sinks to check" in nothing.stderr


def test_the_ranking_reads_discovered_requests_and_risk(engine: Engine, tmp_path: Path) -> None:
    catalog = load_catalog()
    now = dt.datetime.now(dt.UTC).timestamp()
    records = [Record(now - 60 * i, "www.dropbox.com", "10.0.0.1") for i in range(7)]
    records += [Record(now - 60 * i, "cdn.unlisted-site.example", "10.0.0.2") for i in range(3)]
    records.append(Record(now - 40 * 86_400, "www.dropbox.com", "10.0.0.1"))  # too old
    aggregator = Aggregator(Attributor(catalog))
    aggregator.add_all(records)
    merge_rollup(engine, aggregator.rollup())

    ranking = sink_ranking(engine, settings(policy_dir=tmp_path / "none"))
    assert ranking.requests["dropbox"] == 7
    assert ranking.requests["unlisted-site.example"] == 3
    assert ranking.risk["dropbox"] == catalog.get("dropbox").score
    dropbox = Indicator("dropbox.com", Action.BLOCK, app_id="dropbox")
    assert ranking.of(dropbox, "dropbox.com") == (7, catalog.get("dropbox").score)
