"""Enrolled devices: enrolment (which rotates the token), token lookup, last-seen bookkeeping.

A device token is a bearer secret; the store keeps only its SHA-256, so a copy of the database
does not let anyone act as a device. The hash is unsalted on purpose: tokens are 256 random bits
(nothing to brute-force) and the lookup must be one indexed equality.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from enforcer.store.tables.devices import DEVICE
from enforcer.store.tables.indicators import utcnow

LAST_SEEN_INTERVAL = dt.timedelta(minutes=1)
"""`last_seen` is written at most this often per device: a poll every second must not be a write."""


@dataclass(frozen=True, slots=True)
class Device:
    """An enrolled device as the API sees it (never its token)."""

    device_id: str
    hostname: str
    os: str
    user: str
    local_ips: tuple[str, ...]
    groups: tuple[str, ...]
    enrolled_at: dt.datetime
    last_seen: dt.datetime


def new_token() -> str:
    """A fresh device token: 32 random bytes, URL-safe base64."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of a token (SHA-256, hex)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def enroll_device(
    engine: Engine,
    *,
    device_id: str,
    hostname: str,
    os: str,
    user: str,
    local_ips: Sequence[str],
    groups: Sequence[str],
) -> tuple[Device, str]:
    """Create or re-enrol a device; returns it and its new token (the old token stops working)."""
    token = new_token()
    now = utcnow()
    values: dict[str, Any] = {
        "hostname": hostname,
        "os": os,
        "user": user,
        "local_ips": json.dumps(list(local_ips)),
        "groups": json.dumps(sorted(set(groups))),
        "token_hash": hash_token(token),
        "enrolled_at": now,
        "last_seen": now,
    }
    with engine.begin() as conn:
        if not _update(conn, device_id, values):
            try:
                with conn.begin_nested():
                    conn.execute(insert(DEVICE).values(device_id=device_id, **values))
            except IntegrityError:
                # Two enrolments of the same id raced; the later one wins, as re-enrolment does.
                _update(conn, device_id, values)
        row = conn.execute(select(DEVICE).where(DEVICE.c.device_id == device_id)).one()
    return _device(row), token


def _update(conn: Connection, device_id: str, values: dict[str, Any]) -> bool:
    return bool(
        conn.execute(
            update(DEVICE).where(DEVICE.c.device_id == device_id).values(**values)
        ).rowcount
    )


def device_for_token(conn: Connection, token: str) -> Device | None:
    """The device holding `token`, or None."""
    row = conn.execute(select(DEVICE).where(DEVICE.c.token_hash == hash_token(token))).first()
    return _device(row) if row is not None else None


def get_device(conn: Connection, device_id: str) -> Device | None:
    """A device by id, or None."""
    row = conn.execute(select(DEVICE).where(DEVICE.c.device_id == device_id)).first()
    return _device(row) if row is not None else None


def list_devices(conn: Connection, *, limit: int = 100, offset: int = 0) -> list[Device]:
    """Enrolled devices in id order."""
    query = select(DEVICE).order_by(DEVICE.c.device_id).limit(limit).offset(offset)
    return [_device(r) for r in conn.execute(query)]


def count_devices(conn: Connection) -> int:
    """How many devices are enrolled."""
    return int(conn.execute(select(func.count()).select_from(DEVICE)).scalar_one())


def touch_device(engine: Engine, device_id: str, now: dt.datetime | None = None) -> bool:
    """Record that a device was seen; a no-op (no write) if it was seen within the last minute.

    The condition lives in the UPDATE so that several server processes agree without a lock.
    """
    now = now or utcnow()
    with engine.begin() as conn:
        result = conn.execute(
            update(DEVICE)
            .where(DEVICE.c.device_id == device_id, DEVICE.c.last_seen < now - LAST_SEEN_INTERVAL)
            .values(last_seen=now)
        )
    return bool(result.rowcount)


def _device(row: Any) -> Device:
    return Device(
        device_id=row.device_id,
        hostname=row.hostname,
        os=row.os,
        user=row.user,
        local_ips=tuple(json.loads(row.local_ips)),
        groups=tuple(json.loads(row.groups)),
        enrolled_at=_aware(row.enrolled_at),
        last_seen=_aware(row.last_seen),
    )


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


__all__ = [
    "LAST_SEEN_INTERVAL",
    "Device",
    "count_devices",
    "device_for_token",
    "enroll_device",
    "get_device",
    "hash_token",
    "list_devices",
    "new_token",
    "touch_device",
]
