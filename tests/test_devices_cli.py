"""`enforcer devices list [--stale]` as a user runs it, on both back ends."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine, update

from enforcer.store.devices import enroll_device, record_applied
from enforcer.store.tables.indicators import REV
from tests.api.helpers import apply_indicators, block


def run(args: list[str], db_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENFORCER_DATABASE_URL": db_url, "ENFORCER_STALE_AFTER": "600"}
    return subprocess.run(
        [sys.executable, "-m", "enforcer", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_devices_list_shows_hostnames_revisions_and_stale_devices(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)
    old = apply_indicators(engine, [block("a.example")])
    new = apply_indicators(engine, [block("a.example"), block("b.example")])
    with engine.begin() as conn:
        conn.execute(
            update(REV).where(REV.c.id == old).values(created_at=now - dt.timedelta(hours=3))
        )
        conn.execute(
            update(REV).where(REV.c.id == new).values(created_at=now - dt.timedelta(hours=1))
        )
    for device_id, hostname in (("id-a", "alpha.corp"), ("id-b", "bravo.corp")):
        enroll_device(
            engine, device_id=device_id, hostname=hostname, os="Debian GNU/Linux", user="u",
            local_ips=(), groups=("eng",), os_version="12",
        )  # fmt: skip
    record_applied(engine, "id-a", new, now=now - dt.timedelta(minutes=59))
    record_applied(engine, "id-b", old, now=now - dt.timedelta(hours=2))

    listed = run(["devices", "list"], db_url, tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["HOSTNAME", "DEVICE", "ID"]
    alpha = next(line for line in lines if line.startswith("alpha.corp"))
    bravo = next(line for line in lines if line.startswith("bravo.corp"))
    assert "Debian GNU/Linux 12" in alpha and "eng" in alpha and " 1m " in f"{alpha} "
    assert "STALE" not in alpha and "STALE (behind 1h)" in bravo

    stale = run(["devices", "list", "--stale", "--json"], db_url, tmp_path)
    assert stale.returncode == 0, stale.stderr
    page = json.loads(stale.stdout)
    assert page["count"] == 1 and [d["hostname"] for d in page["value"]] == ["bravo.corp"]
    assert page["value"][0]["appliedRevision"] == old and page["value"][0]["stale"] is True
    assert page["value"][0]["timeToEnforce"] == 3600.0

    searched = run(["devices", "list", "-q", "ALPHA"], db_url, tmp_path)
    assert "alpha.corp" in searched.stdout and "bravo.corp" not in searched.stdout
