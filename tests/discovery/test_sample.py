"""`enforcer discovery sample`: a month of made-up traffic that the uploader reads in full."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from enforcer.catalog import Catalog, load_catalog
from enforcer.discovery.formats import FORMATS
from enforcer.discovery.records import BadLine, Record
from enforcer.discovery.sample import MIX, SQUID_FILE, ZSCALER_FILE, write_sample

NOW = dt.datetime(2026, 11, 30, 9, 30, tzinfo=dt.UTC)


def _records(path: Path, fmt: str) -> list[Record | BadLine]:
    with path.open() as lines:
        return list(FORMATS[fmt](lines))


def test_the_apps_of_the_mix_are_catalog_apps() -> None:
    catalog = load_catalog()
    apps = [use.host for use in MIX if "." not in use.host]
    assert [a for a in apps if a not in catalog] == []  # else they would read as unrecognised


def test_a_month_of_fifty_devices_parses_without_a_bad_line(tmp_path: Path) -> None:
    catalog: Catalog = load_catalog()
    written = write_sample(catalog, tmp_path, days=30, device_count=50, now=NOW)
    squid = _records(tmp_path / SQUID_FILE, "squid")
    zscaler = _records(tmp_path / ZSCALER_FILE, "zscaler-nss")
    assert written.files == {
        tmp_path / SQUID_FILE: len(squid),
        tmp_path / ZSCALER_FILE: len(zscaler),
    }
    records = squid + zscaler
    assert not [r for r in records if isinstance(r, BadLine)]
    assert len(records) > 20_000
    good = [r for r in records if isinstance(r, Record)]
    # Today and the 29 days before, as `--since 30d` counts them; nothing after now.
    days = {dt.datetime.fromtimestamp(r.time, dt.UTC).date() for r in good}
    assert days == {NOW.date() - dt.timedelta(days=n) for n in range(30)}
    assert max(r.time for r in good) < NOW.timestamp()
    devices = {r.device or r.src_ip for r in good}
    assert len(devices) == 50
    assert {r.action for r in good} == {"allowed", "blocked"}
    remote = [r for r in good if r.device]
    assert remote and all(r.bytes_up > 0 or r.action == "blocked" for r in remote)


def test_the_same_seed_gives_the_same_traffic_on_other_dates(tmp_path: Path) -> None:
    catalog = load_catalog()
    later = NOW + dt.timedelta(days=3, hours=5)
    write_sample(catalog, tmp_path / "a", days=7, device_count=10, now=NOW)
    write_sample(catalog, tmp_path / "b", days=7, device_count=10, now=later)
    write_sample(catalog, tmp_path / "c", days=7, device_count=10, now=NOW, seed=2)

    def shape(directory: Path, now: dt.datetime) -> list[tuple[object, ...]]:
        """Each request with the number of days before `now`'s day it was made, for its time."""
        today = now.date()
        out = []
        for name, fmt in ((SQUID_FILE, "squid"), (ZSCALER_FILE, "zscaler-nss")):
            for r in _records(directory / name, fmt):
                assert isinstance(r, Record)
                assert r.time < now.timestamp()
                day = dt.datetime.fromtimestamp(r.time, dt.UTC).date()
                out.append(((today - day).days, *r[1:]))
        return out

    a = shape(tmp_path / "a", NOW)
    assert a == shape(tmp_path / "b", later)
    assert {ago for ago, *_ in a} == set(range(7))
    assert shape(tmp_path / "c", NOW) != a


def test_the_command_writes_the_files_and_says_how_to_upload_them(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "enforcer", "discovery", "sample", "--days", "2", "--devices",
         "4", "--out", str(tmp_path / "logs")],
        capture_output=True, text=True, timeout=120, env=dict(os.environ),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (
        f"enforcer discovery upload --format squid {tmp_path / 'logs' / SQUID_FILE}" in done.stdout
    )
    assert (tmp_path / "logs" / ZSCALER_FILE).stat().st_size > 0
