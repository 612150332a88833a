"""A syslog collector (`enforcer discovery collect`) is its own continuous report, on both back
ends: a real collector process on a free port of 127.0.0.1, fed over UDP."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import Engine

from enforcer.catalog import load_catalog
from enforcer.discovery import reports
from enforcer.store.named_reports import Report, ReportError, find_report, scoped
from tests.sinks.helpers import free_port

REPO = Path(__file__).resolve().parents[2]


def test_a_collector_rolls_up_into_its_own_named_report(db_url: str, engine: Engine) -> None:
    port = free_port()
    env = {**os.environ, "ENFORCER_DATABASE_URL": db_url}
    collector = subprocess.Popen(
        [sys.executable, "-m", "enforcer", "discovery", "collect", "--listen", f"127.0.0.1:{port}",
         "--format", "squid", "--flush-seconds", "0.2", "--report", "firewall syslog"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        at = dt.datetime.now(dt.UTC).timestamp()
        line = (
            f"<14>Dec  2 10:00:00 proxy1 squid: {at:.3f}  120 10.1.2.20 TCP_TUNNEL/200 5000 "
            "CONNECT www.dropbox.com:443 alice HIER_DIRECT/162.125.1.18 -"
        )
        report = None
        deadline = time.monotonic() + 60
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            while report is None or report.records == 0:  # UDP: send until it is rolled up
                assert time.monotonic() < deadline, "the collector rolled nothing up"
                udp.sendto(line.encode(), ("127.0.0.1", port))
                time.sleep(0.5)
                report = _report(engine)
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(timeout=30)
    assert (report.kind, report.source) == ("continuous", f"syslog 127.0.0.1:{port} squid")
    assert report.last_seen >= int(at)
    with engine.connect() as conn:
        scoped(conn, report)
        apps = reports.apps_report(conn, load_catalog(), *reports.day_range(1))
    assert [a["app"] for a in apps] == ["dropbox"]


def _report(engine: Engine) -> Report | None:
    """The collector's report, None before its start created it."""
    with engine.connect() as conn:
        try:
            return find_report(conn, "firewall syslog")
        except ReportError:
            return None
