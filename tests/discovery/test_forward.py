"""Alert forwarding against real receivers on 127.0.0.1: a signed JSON webhook that fails before
it accepts (retried with back-off), and syslog CEF over UDP and TCP; on both back ends."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from enforcer.catalog import load_catalog
from enforcer.config import Settings
from enforcer.discovery import reports
from enforcer.discovery.forward import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SyslogCef,
    Webhook,
    forward_pending,
    receivers_from,
)
from enforcer.pipeline.daemon import Daemon
from enforcer.store.alerts import list_alerts, raise_policy_alerts
from enforcer.store.devices import enroll_device
from enforcer.store.events import EventRecord, store_batch
from enforcer.store.trust import record_enrolment_trust
from tests.conftest import write_policy
from tests.sinks.helpers import free_port

SECRET = b"s3cret-shared-with-the-siem"


@dataclass
class Hook:
    url: str
    fail_first: int = 0
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)


@pytest.fixture
def hook() -> Iterator[Hook]:
    port = free_port()
    state = Hook(url=f"http://127.0.0.1:{port}/alerts")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            code = 503 if len(state.answers) < state.fail_first else 204
            state.answers.append(code)
            if code == 204:
                state.bodies.append(body)
                state.headers.append(dict(self.headers))
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def _raise(engine: Engine, *apps: str) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    hits = [
        {
            "policy": "blocked app hit", "when": "blocked_app", "severity": "high",
            "machine": "pc-01", "user": "alice", "app_id": app, "domain": f"{app}.example",
            "count": 2, "time": now, "details": f"2 hit(s) on blocked app {app} | a=b",
        }
        for app in apps
    ]  # fmt: skip
    with engine.begin() as conn:
        raise_policy_alerts(conn, hits, report="proxy week 47")


def test_the_webhook_is_signed_retried_with_back_off_and_sent_once(
    engine: Engine, hook: Hook
) -> None:
    _raise(engine, "mega", "wetransfer")
    hook.fail_first = 2
    sent = forward_pending(engine, [Webhook(hook.url, SECRET)], attempts=4, backoff=0.01)
    assert sent == 2 and hook.answers == [503, 503, 204]
    (body,), (headers,) = hook.bodies, hook.headers
    expected = hmac.new(SECRET, headers[TIMESTAMP_HEADER].encode() + b"." + body, hashlib.sha256)
    assert headers[SIGNATURE_HEADER] == "sha256=" + expected.hexdigest()
    alerts = json.loads(body)["alerts"]
    assert [(a["policy"], a["app"], a["machine"], a["hits"]) for a in alerts] == [
        ("blocked app hit", "mega", "pc-01", 2),
        ("blocked app hit", "wetransfer", "pc-01", 2),
    ]
    assert {a["report"] for a in alerts} == {"proxy week 47"}  # the data source named
    assert forward_pending(engine, [Webhook(hook.url, SECRET)], backoff=0.01) == 0  # sent once
    with engine.connect() as conn:
        assert all(a["forwarded_at"] is not None for a in list_alerts(conn))


def test_alerts_a_receiver_did_not_take_wait_for_the_next_run(engine: Engine, hook: Hook) -> None:
    _raise(engine, "mega")
    hook.fail_first = 10
    assert forward_pending(engine, [Webhook(hook.url, SECRET)], attempts=3, backoff=0.01) == 0
    assert hook.answers == [503] * 3
    hook.fail_first = 0
    hook.answers.clear()
    assert forward_pending(engine, [Webhook(hook.url, SECRET)], backoff=0.01) == 1


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
def test_syslog_carries_each_alert_in_cef(engine: Engine, protocol: str) -> None:
    port = free_port()
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as server:
        server.bind(("127.0.0.1", port))
        server.settimeout(5)
        if protocol == "tcp":
            server.listen()
        _raise(engine, "mega", "wetransfer")
        settings = Settings(alert_syslog=f"127.0.0.1:{port}", alert_syslog_protocol=protocol)
        (receiver,) = receivers_from(settings)
        assert isinstance(receiver, SyslogCef)
        assert forward_pending(engine, [receiver]) == 2
        if protocol == "udp":
            lines = [server.recv(65535).decode() for _ in range(2)]
        else:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(5)
                data = b""
                while data.count(b"\n") < 2:
                    data += conn.recv(65535)
            lines = data.decode().splitlines()
    first = lines[0]
    assert first.startswith("<130>1 ")  # local0, critical: a high alert
    cef = first[first.index("CEF:0|") :]
    header = cef.split("|")
    assert header[:3] == ["CEF:0", "Enforcer", "Enforcer"]
    assert header[4:7] == ["policy:blocked app hit", "blocked app hit: mega", "8"]
    assert "shost=pc-01" in cef and "suser=alice" in cef and "cnt=2" in cef
    assert "cs2Label=app cs2=mega" in cef and "cs4Label=report cs4=proxy week 47" in cef
    assert "msg=2 hit(s) on blocked app mega | a\\=b" in cef  # '=' escaped in a value


def test_a_webhook_without_a_secret_is_refused_by_the_settings() -> None:
    with pytest.raises(ValueError, match="ENFORCER_ALERT_WEBHOOK_SECRET"):
        Settings(alert_webhook_url="http://127.0.0.1:1/alerts")
    with pytest.raises(ValueError, match="not host:port"):
        Settings(alert_syslog="siem.example")


def test_the_daemon_raises_policy_alerts_and_forwards_them_with_custom_apps_attributed(
    tmp_path: Path, db_url: str, engine: Engine, hook: Hook
) -> None:
    write_policy(
        tmp_path / "policies",
        "alerts.yaml",
        """
        alert_policies:
          - name: blocked app hit
            when: blocked_app
            severity: high
        custom_apps:
          - {id: acme-share, name: Acme Share, vendor: Acme, category: file-sharing,
             domains: [share.acme.example]}
        """,
    )
    settings = Settings(
        database_url=db_url, policy_dir=tmp_path / "policies", watch_policies=False,
        alert_webhook_url=hook.url, alert_webhook_secret=SECRET.decode(),
    )  # fmt: skip
    enroll_device(
        engine, device_id="d1", hostname="pc-01", os="Linux", user="alice",
        local_ips=("10.0.0.7",), groups=(),
    )  # fmt: skip
    record_enrolment_trust(engine, "d1", group_secret=True)  # its machine is its hostname
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    blocked = EventRecord(
        now, "pc-01", "alice", "10.0.0.7", "mega.nz", "192.0.2.9", 443, 0, 0, "blocked",
        "mega.nz", "mega", "dns",
    )  # fmt: skip
    custom = EventRecord(
        now, "pc-01", "alice", "10.0.0.7", "files.share.acme.example", "192.0.2.9", 443, 10, 10,
        "allowed", "", "", "proxy",
    )  # fmt: skip
    store_batch(engine, device_id="d1", batch_id="b1", events=[blocked, blocked, custom])
    daemon = Daemon(settings, engine)
    try:
        assert daemon.discovery_tick() == 3
    finally:
        daemon.lock.release()
    (body,) = hook.bodies
    (alert,) = json.loads(body)["alerts"]
    assert (alert["policy"], alert["app"], alert["hits"]) == ("blocked app hit", "mega", 2)
    assert alert["machine"].startswith("pc-01")  # 'pc-01 (device d1)' while not trusted
    # The daemon attributes with the policy set's custom apps too, not the bundled catalog alone.
    with engine.connect() as conn:
        apps = {a["app"] for a in reports.apps_report(conn, load_catalog(), *reports.day_range(1))}
    assert "acme-share" in apps
