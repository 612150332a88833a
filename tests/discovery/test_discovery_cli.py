"""`enforcer discovery` as a user runs it: upload every sample format, reports, alerts."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import Engine

from enforcer.catalog import load_catalog
from enforcer.discovery.continuous import process_events
from enforcer.models import Action, Indicator, Severity
from enforcer.store.alerts import list_alerts
from enforcer.store.events import EventRecord, store_batch
from enforcer.store.manual import add_manual

REPO = Path(__file__).resolve().parents[2]
LOGS = REPO / "examples" / "logs"
GENERIC_CSV = "time=timestamp:iso,src_ip=client_ip,user=username,device=device,host=dest_host,dest_port=dest_port,bytes_up=sent,bytes_down=received,action=verdict"


def run(
    args: list[str], db_url: str, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENFORCER_DATABASE_URL": db_url, **(extra or {})}
    return subprocess.run([sys.executable, "-m", "enforcer", "discovery", *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=REPO)  # fmt: skip


def test_upload_every_format_then_report(db_url: str) -> None:
    uploads = [
        ("squid", ["squid-access.log", "squid-access.log.gz"], []),
        ("zeek", ["zeek-http.log", "zeek-ssl.json", "zeek-conn.log"], []),
        ("w3c", ["iis-w3c.log", "proxysg-w3c.log"], []),
        ("panos", ["panos-traffic.csv"], []),
        ("zscaler-nss", ["zscaler-nss.log", "zscaler-nss-kv.log"], []),
        ("csv", ["generic.csv"], ["--map", GENERIC_CSV]),
    ]
    total = 0
    for fmt, files, extra in uploads:
        done = run(
            ["upload", "--format", fmt, *extra, "--json", *[str(LOGS / f) for f in files]], db_url
        )
        assert done.returncode == 0, done.stderr
        stats = json.loads(done.stdout)
        assert stats["records"] > 0 and stats["files"] == len(files), fmt
        total += stats["attributed"]
    apps = json.loads(run(["apps", "--since", "3650d", "--json"], db_url).stdout)
    assert sum(a["transactions"] for a in apps) == total
    assert {"dropbox", "mega"} <= {a["app"] for a in apps}
    exported = list(
        csv.DictReader(
            io.StringIO(run(["apps", "--since", "3650d", "--format", "csv"], db_url).stdout)
        )
    )
    assert [r["app"] for r in exported] == [a["app"] for a in apps]
    machines = json.loads(run(["machines", "--since", "3650d", "--json"], db_url).stdout)
    top = next(m["device"] for m in machines if m["lastUser"])
    machine = json.loads(run(["machine", top, "--since", "3650d", "--json"], db_url).stdout)
    assert machine["device"] == top and machine["apps"] and machine["ipAddresses"]
    user = machine["users"][0]["user"]
    person = json.loads(run(["user", user, "--since", "3650d", "--json"], db_url).stdout)
    assert top in person["devices"]  # a user leads to their machines, a machine to its users
    missing = run(["machine", "no-such-pc"], db_url)
    assert missing.returncode == 1 and "no discovery data" in missing.stderr


def test_bad_lines_are_counted_with_reasons_and_never_abort(tmp_path: Path, db_url: str) -> None:
    good = (LOGS / "squid-access.log").read_text().splitlines()
    log = tmp_path / "mixed.log"
    log.write_text("\n".join([good[0], "garbage line", good[1], "1.0 x y"]) + "\n")
    done = run(["upload", "--format", "squid", "--json", str(log)], db_url)
    stats = json.loads(done.stdout)
    assert stats["records"] == 2 and stats["badLines"] == 2
    assert [s["line"] for s in stats["badLineSamples"]] == [2, 4]
    assert all(s["reason"] for s in stats["badLineSamples"])
    # Other bytes (a trailing blank line): the same content again would be skipped.
    other = tmp_path / "mixed-again.log"
    other.write_text(log.read_text() + "\n")
    human = run(["upload", "--format", "squid", str(other)], db_url).stdout
    assert f"{other}:2:" in human
    bad_map = run(
        ["upload", "--format", "csv", "--map", "nonsense", str(LOGS / "generic.csv")], db_url
    )
    assert bad_map.returncode != 0 and "error" in (bad_map.stderr + bad_map.stdout).lower()


def test_device_events_roll_up_and_raise_alerts(engine: Engine, db_url: str) -> None:
    add_manual(
        engine, Indicator("mega.nz", Action.BLOCK, Severity.HIGH, generate_alert=True), actor="t"
    )
    now = dt.datetime.now(dt.UTC)
    events = [
        EventRecord(now, "pc-1", "alice", "10.0.0.5", "g.api.mega.nz", "1.2.3.4", 443, 0, 0, "blocked", "mega.nz", "mega", "proxy"),
        EventRecord(now, "pc-1", "alice", "10.0.0.5", "www.dropbox.com", "1.2.3.5", 443, 500, 9000, "allowed", "", "", "proxy"),
    ]  # fmt: skip
    store_batch(engine, device_id="dev-1", batch_id="b1", events=events)
    assert process_events(engine, load_catalog()) == 2
    assert process_events(engine, load_catalog()) == 0  # the cursor moved: nothing counted twice
    with engine.connect() as conn:
        [alert] = list_alerts(conn)
    assert (alert["domain"], alert["severity"], alert["device_id"], alert["status"]) == (
        "g.api.mega.nz",
        "High",
        "dev-1",
        "open",
    )
    apps = {a["app"]: a for a in json.loads(run(["apps", "--json"], db_url).stdout)}
    assert apps["mega"]["blocked"] == 1 and apps["dropbox"]["upload"] == 500
    listed = json.loads(run(["alerts", "--json"], db_url).stdout)
    assert [a["id"] for a in listed] == [alert["id"]]
    assert run(["ack", str(alert["id"])], db_url).returncode == 0
    assert json.loads(run(["alerts", "--status", "open", "--json"], db_url).stdout) == []


def test_raw_events_are_pruned_after_retention_but_never_before_they_are_rolled_up(
    engine: Engine,
) -> None:
    from enforcer.store.events import count_events, prune_events

    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    event = EventRecord(
        old, "pc-1", "alice", "10.0.0.5", "www.dropbox.com", "", 443, 1, 2, "allowed", "", "", "dns"
    )
    store_batch(engine, device_id="dev-1", batch_id="old", events=[event, event])
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    assert prune_events(engine, cutoff) == 0  # not rolled up yet: kept
    process_events(engine, load_catalog())
    assert prune_events(engine, cutoff) == 2
    with engine.connect() as conn:
        assert count_events(conn) == 0


def test_a_log_in_the_wrong_format_fails_and_suggests_the_right_one(db_url: str) -> None:
    done = run(["upload", "--format", "w3c", str(LOGS / "squid-access.log.gz")], db_url)
    assert done.returncode == 1
    assert "no line parsed as w3c" in done.stderr
    assert "looks like squid (--format squid)" in done.stderr
    right = run(["upload", "--format", "squid", str(LOGS / "squid-access.log.gz")], db_url)
    assert right.returncode == 0, right.stderr


def test_a_cut_machines_list_says_how_many_there_are(db_url: str) -> None:
    assert (
        run(["upload", "--format", "squid", str(LOGS / "squid-access.log.gz")], db_url).returncode
        == 0
    )
    done = run(["machines", "--since", "3650d", "--limit", "2", "--json"], db_url)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 2, "the rows stay exactly the rows"
    assert "2 of " in done.stderr and "machines shown" in done.stderr


def test_a_custom_app_of_the_policy_is_discovered_under_its_id(db_url: str, tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "custom.yaml").write_text(
        "custom_apps:\n  - id: acme-share\n    name: Acme Share\n    vendor: Acme\n"
        "    category: file-sharing\n    domains: [share.acme.example]\n"
        "apps:\n  - {app: acme-share, tag: unsanctioned}\n"
    )
    log = tmp_path / "access.log"
    now = time.time() - 600
    log.write_text(
        f"{now:.3f}     84 10.1.3.27 TCP_MISS/200 70539 GET http://files.share.acme.example/x "
        "bob HIER_DIRECT/192.0.2.7 text/html\n"
    )
    env_policies = {"ENFORCER_POLICY_DIR": str(policies)}
    done = run(["upload", "--format", "squid", str(log)], db_url, env_policies)
    assert done.returncode == 0, done.stderr
    apps = {a["app"] for a in json.loads(run(["apps", "--json"], db_url, env_policies).stdout)}
    assert "acme-share" in apps
    domains = json.loads(run(["domains", "--json"], db_url, env_policies).stdout)
    assert "acme.example" not in {d["domain"] for d in domains}


def test_the_same_content_uploaded_twice_is_counted_once(db_url: str) -> None:
    squid = str(LOGS / "squid-access.log")

    def dropbox() -> int:
        listed = json.loads(run(["apps", "--since", "3650d", "--json"], db_url).stdout)
        return int({a["app"]: a for a in listed}["dropbox"]["transactions"])

    assert run(["upload", "--format", "squid", squid], db_url).returncode == 0
    once = dropbox()
    again = run(["upload", "--format", "squid", squid], db_url)
    assert again.returncode == 0, again.stderr
    assert "skipped" in again.stdout and "not counted again" in again.stdout
    assert dropbox() == once > 0, "counted once, not twice"
