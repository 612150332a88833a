"""Forwarding alerts: a signed JSON webhook, and syslog in CEF for SIEMs.

The daemon calls `forward_pending` after each roll-up: the alerts not forwarded yet (the store's
outbox, `forwarded_at`) go to every configured receiver, each tried `attempts` times with
doubling back-off; an alert is marked forwarded only when every receiver took it, so a receiver
that is down gets it on a later run (a receiver that took it then may get it twice: delivery is
at least once, and the alert's ``id`` tells a repeat). An alert is sent when it opens; its later
hits are counted in the store, not sent again.

Webhook: ``POST`` of ``{"alerts": [...]}`` with ``X-Enforcer-Timestamp`` (Unix seconds) and
``X-Enforcer-Signature: sha256=<hex>``, the HMAC-SHA256 of ``<timestamp>.<body>`` under the
shared secret (the receiver recomputes it, and refuses old timestamps against replays). 5xx,
429 and network errors are retried; another 4xx is not (the request itself is wrong).

Syslog: one RFC 5424 message per alert (facility local0), its text a CEF record, over UDP or
TCP (newline-framed).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import httpx
import structlog
from sqlalchemy import Engine

from enforcer import __version__
from enforcer.config import Settings
from enforcer.store.alerts import mark_forwarded, pending_forward

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Enforcer-Signature"
TIMESTAMP_HEADER = "X-Enforcer-Timestamp"
CEF_SEVERITY = {"informational": 1, "low": 3, "medium": 5, "high": 8}
SYSLOG_SEVERITY = {"informational": 6, "low": 5, "medium": 4, "high": 2}
LOCAL0 = 16


class ForwardError(Exception):
    """A receiver did not take the alerts; `retry` says whether trying again can help."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class Receiver(Protocol):
    """Somewhere alerts go."""

    name: str

    def send(self, alerts: Sequence[dict[str, Any]]) -> None: ...


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()


def alert_json(alert: dict[str, Any]) -> dict[str, Any]:
    """The wire shape of an alert (webhook body, API)."""
    return {
        "id": alert["id"],
        "time": _iso(alert["time"]),
        "lastSeen": _iso(alert.get("last_seen") or alert["time"]),
        "severity": alert["severity"],
        "status": alert["status"],
        "policy": alert.get("policy", ""),
        "kind": alert["action"],
        "machine": alert.get("machine", ""),
        "deviceId": alert["device_id"],
        "user": alert["user"],
        "app": alert["app_id"],
        "domain": alert["domain"],
        "indicator": alert["indicator"],
        "hits": alert["hits"],
        "details": alert.get("details", ""),
        "report": alert.get("report", ""),
    }


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value for a body sent at `timestamp`."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class Webhook:
    """POSTs alerts as signed JSON."""

    name = "webhook"

    def __init__(self, url: str, secret: bytes, *, timeout: float = 10.0) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout

    def send(self, alerts: Sequence[dict[str, Any]]) -> None:
        body = json.dumps({"alerts": [alert_json(a) for a in alerts]}).encode()
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: sign(self.secret, stamp, body),
            "User-Agent": f"enforcer/{__version__}",
        }
        try:
            answer = httpx.post(self.url, content=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise ForwardError(f"{self.url}: {exc}", retry=True) from exc
        if answer.status_code >= 500 or answer.status_code == 429:
            raise ForwardError(f"{self.url} answered {answer.status_code}", retry=True)
        if answer.status_code >= 300:
            raise ForwardError(f"{self.url} answered {answer.status_code}", retry=False)


def _cef_header(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|")


def _cef_value(value: object) -> str:
    text = str(value).replace("\\", "\\\\").replace("=", "\\=")
    return text.replace("\r", "\\r").replace("\n", "\\n")


def cef_record(alert: dict[str, Any]) -> str:
    """An alert as a CEF record (ArcSight Common Event Format, version 0)."""
    policy = alert.get("policy", "")
    signature = f"policy:{policy}" if policy else f"indicator:{alert['action']}"
    name = (
        f"{policy}: {alert['app_id'] or alert.get('machine', '')}"
        if policy
        else (f"{alert['action']} {alert['domain']}")
    )
    when = alert["time"] if alert["time"].tzinfo else alert["time"].replace(tzinfo=dt.UTC)
    extension = {
        "externalId": alert["id"],
        "rt": int(when.timestamp() * 1000),
        "act": alert["action"],
        "cnt": alert["hits"],
        "shost": alert.get("machine") or alert["device_id"],
        "suser": alert["user"],
        "dhost": alert["domain"],
        "cs1Label": "policy",
        "cs1": policy,
        "cs2Label": "app",
        "cs2": alert["app_id"],
        "cs3Label": "indicator",
        "cs3": alert["indicator"],
        "cs4Label": "report",
        "cs4": alert.get("report", ""),
        "msg": alert.get("details", ""),
    }
    header = "|".join(
        _cef_header(v)
        for v in (
            "CEF:0",
            "Enforcer",
            "Enforcer",
            __version__,
            signature,
            name,
            CEF_SEVERITY.get(alert["severity"].lower(), 5),
        )
    )
    return header + "|" + " ".join(f"{k}={_cef_value(v)}" for k, v in extension.items() if v != "")


def syslog_message(alert: dict[str, Any], hostname: str) -> bytes:
    """An RFC 5424 syslog message carrying the alert's CEF record."""
    pri = LOCAL0 * 8 + SYSLOG_SEVERITY.get(alert["severity"].lower(), 4)
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f"<{pri}>1 {stamp} {hostname} enforcer - alert - {cef_record(alert)}".encode()


class SyslogCef:
    """Sends alerts to a syslog receiver in CEF."""

    name = "syslog"

    def __init__(self, host: str, port: int, protocol: str = "udp", *, timeout: float = 5.0):
        self.host, self.port, self.protocol, self.timeout = host, port, protocol, timeout
        self.hostname = socket.gethostname()

    def send(self, alerts: Sequence[dict[str, Any]]) -> None:
        messages = [syslog_message(a, self.hostname) for a in alerts]
        try:
            if self.protocol == "tcp":
                with socket.create_connection((self.host, self.port), self.timeout) as conn:
                    conn.sendall(b"".join(m + b"\n" for m in messages))
            else:
                family = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
                with socket.socket(family[0], socket.SOCK_DGRAM) as udp:
                    for message in messages:
                        udp.sendto(message, family[4])
        except OSError as exc:
            raise ForwardError(f"syslog {self.host}:{self.port}: {exc}", retry=True) from exc


def receivers_from(settings: Settings) -> list[Receiver]:
    """The receivers the settings configure (none: forwarding is off)."""
    out: list[Receiver] = []
    if settings.alert_webhook_url and settings.alert_webhook_secret:
        secret = settings.alert_webhook_secret.get_secret_value().encode()
        out.append(Webhook(settings.alert_webhook_url, secret))
    if settings.alert_syslog:
        host, _, port = settings.alert_syslog.rpartition(":")
        out.append(SyslogCef(host.strip("[]"), int(port), settings.alert_syslog_protocol))
    return out


def deliver(
    receiver: Receiver,
    alerts: Sequence[dict[str, Any]],
    *,
    attempts: int = 4,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Send to one receiver, retrying with doubling back-off; False when it did not take them."""
    for attempt in range(attempts):
        try:
            receiver.send(alerts)
            return True
        except ForwardError as exc:
            last = attempt == attempts - 1 or not exc.retry
            log.warning(
                "alert_forward_failed", receiver=receiver.name, error=str(exc),
                attempt=attempt + 1, giving_up=last,
            )  # fmt: skip
            if last:
                return False
            sleep(backoff * 2**attempt)
    return False


def forward_pending(
    engine: Engine,
    receivers: Sequence[Receiver],
    *,
    attempts: int = 4,
    backoff: float = 0.5,
    batch: int = 100,
) -> int:
    """Send the alerts not forwarded yet to every receiver; returns how many were forwarded."""
    if not receivers:
        return 0
    with engine.connect() as conn:
        pending = pending_forward(conn)
    done = 0
    for start in range(0, len(pending), batch):
        alerts = pending[start : start + batch]
        ok = [deliver(r, alerts, attempts=attempts, backoff=backoff) for r in receivers]
        if not all(ok):
            break  # the rest waits for the next run, in order
        mark_forwarded(engine, [a["id"] for a in alerts])
        done += len(alerts)
    if done:
        log.info("alerts_forwarded", count=done, receivers=[r.name for r in receivers])
    return done
