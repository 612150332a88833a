"""`enforcer events list` as a user runs it: a table newest first, filters, a note when the
limit cut the result, --json lines, --count, and bad options named in the error."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from enforcer.store.devices import enroll_device
from enforcer.store.events import EventRecord, store_batch
from tests.test_cli import run

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def record(minutes_ago: int, domain: str, **extra: object) -> EventRecord:
    values: dict[str, object] = {
        "time": NOW - dt.timedelta(minutes=minutes_ago),
        "hostname": "ws-17.corp.example",
        "user": "alice",
        "local_ip": "10.0.0.5",
        "domain": domain,
        "dest_ip": "203.0.113.7",
        "dest_port": 443,
        "bytes_up": 1200,
        "bytes_down": 5_600_000,
        "action": "allowed",
        "indicator": "",
        "app_id": "",
        "source": "proxy",
        "pid": 4242,
        "process_name": "firefox",
        "process_path": "/usr/lib/firefox/firefox",
    }
    values.update(extra)
    return EventRecord(**values)  # type: ignore[arg-type]


@pytest.fixture
def env(db_url: str, engine: Engine) -> dict[str, str]:
    enroll_device(
        engine, device_id="dev-17", hostname="ws-17.corp.example", os="Linux", user="alice",
        local_ips=["10.0.0.5"], groups=[],
    )  # fmt: skip
    events = [
        record(1, "www.dropbox.com"),
        record(2, "dropbox.com", action="blocked", indicator="dropbox.com", bytes_down=0),
        record(3, "example.org", user="bob", process_name="curl", dest_ip="2001:db8::7"),
        record(60 * 48, "dl.dropbox.com"),
    ]
    store_batch(engine, device_id="dev-17", batch_id="b1", events=events)
    return {"ENFORCER_DATABASE_URL": db_url}


def test_a_table_newest_first_with_the_event_fields(env: dict[str, str], tmp_path: Path) -> None:
    done = run(
        ["events", "list", "--device", "WS-17.corp.example", "--since", "24h"], env, tmp_path
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["TIME", "(UTC)", "DEVICE"]
    assert [line.split()[5] for line in lines[1:]] == [
        "www.dropbox.com",
        "dropbox.com",
        "example.org",
    ]
    assert "ws-17.corp.example" in lines[1] and "firefox" in lines[1]
    assert "203.0.113.7:443" in lines[1] and "1K/5M" in lines[1]
    assert lines[2].split()[-2:] == ["1K/0", "dropbox.com"]  # blocked by that indicator
    assert "[2001:db8::7]:443" in lines[3] and "bob" in lines[3] and "curl" in lines[3]
    assert done.stderr == ""


def test_filters_json_lines_and_count(env: dict[str, str], tmp_path: Path) -> None:
    done = run(["events", "list", "--domain", "dropbox.com", "--json"], env, tmp_path)
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["domain"] for e in events] == ["www.dropbox.com", "dropbox.com", "dl.dropbox.com"]
    assert events[0]["deviceId"] == "dev-17" and events[0]["processName"] == "firefox"
    done = run(
        ["events", "list", "--action", "BLOCKED", "--user", "alice", "--json"], env, tmp_path
    )
    assert [json.loads(line)["domain"] for line in done.stdout.splitlines()] == ["dropbox.com"]
    counted = run(["events", "list", "--domain", "dropbox.com", "--count"], env, tmp_path)
    assert counted.stdout.strip() == "3"
    none = run(["events", "list", "--process", "wget"], env, tmp_path)
    assert none.returncode == 0 and none.stdout == "" and "No events match." in none.stderr


def test_the_limit_says_when_it_cut_the_result(env: dict[str, str], tmp_path: Path) -> None:
    cut = run(["events", "list", "--limit", "2", "--json"], env, tmp_path)
    assert len(cut.stdout.splitlines()) == 2
    assert "Showing the newest 2 events; more match" in cut.stderr
    whole = run(["events", "list", "--limit", "4"], env, tmp_path)
    assert len(whole.stdout.splitlines()) == 5 and "more match" not in whole.stderr


@pytest.mark.parametrize(
    ("args", "option", "said"),
    [
        (["--since", "yesterday"], "--since", "neither a duration"),
        (["--until", "2026-02-30"], "--until", "ISO 8601"),
        (["--action", "deny"], "--action", "not one of allowed, blocked"),
    ],
)
def test_a_bad_option_is_named(
    env: dict[str, str], tmp_path: Path, args: list[str], option: str, said: str
) -> None:
    done = run(["events", "list", *args], env, tmp_path)
    assert done.returncode == 2
    assert f"Invalid value for {option}:" in done.stderr and said in done.stderr
