"""Enrolled devices: enrolment (which rotates the token), token lookup, last-seen bookkeeping,
the identity a device reports, the revision it applied, and where it stands (`DeviceStatus`).

A device token is a bearer secret; the store keeps only its SHA-256, so a copy of the database
does not let anyone act as a device. The hash is unsalted on purpose: tokens are 256 random bits
(nothing to brute-force) and the lookup must be one indexed equality.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    case,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from enforcer.store.audit import record_change
from enforcer.store.tables.devices import DEVICE
from enforcer.store.tables.indicators import REV, utcnow

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
    os_version: str = ""
    agent_version: str = ""
    applied_revision: int | None = None
    """The revision the device last said it holds; None before its first sync."""
    applied_at: dt.datetime | None = None
    """When it first said so."""
    identity_updated_at: dt.datetime | None = None
    """When it last reported a change of its facts (hostname, OS, agent, user, addresses)."""
    requested_groups: tuple[str, ...] = ()
    """The groups the device asked for at enrolment (recorded only: `groups` is decided)."""
    assigned_groups: tuple[str, ...] | None = None
    """The groups an admin assigned (None: never); when set, they are the device's groups."""
    token_issued_at: dt.datetime | None = None
    """When the device's current token was issued (None: read as `enrolled_at`)."""

    def token_age(self, now: dt.datetime) -> dt.timedelta:
        """How long ago the device's current token was issued."""
        return now - (self.token_issued_at or self.enrolled_at)


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A device and where it stands against the server's revisions."""

    device: Device
    revision_created_at: dt.datetime | None
    """When the revision the device applied was created (None: unknown or never synced)."""
    behind_since: dt.datetime | None
    """Since when the device lacks a revision: the creation of the first one it does not hold
    (its enrolment, if later and it never synced); None when it is up to date."""
    stale: bool
    """Behind for longer than the `stale_after` the list was read with."""

    @property
    def time_to_enforce(self) -> dt.timedelta | None:
        """From the applied revision's creation to the device confirming it."""
        applied = self.device.applied_at
        if applied is None or self.revision_created_at is None:
            return None
        return max(dt.timedelta(0), applied - self.revision_created_at)

    def as_json(self) -> dict[str, Any]:
        """The device as administrators see it, JSON-ready (camelCase; never its token).

        The one mapping of a device to its public form: the API's `DevicePublic`, the CLI and
        the machine report all print this.
        """
        d = self.device
        took = self.time_to_enforce
        return {
            "deviceId": d.device_id,
            "hostname": d.hostname,
            "os": d.os,
            "osVersion": d.os_version,
            "agentVersion": d.agent_version,
            "user": d.user,
            "localIps": list(d.local_ips),
            "groups": list(d.groups),
            "requestedGroups": list(d.requested_groups),
            "assignedGroups": None if d.assigned_groups is None else list(d.assigned_groups),
            "enrolledAt": d.enrolled_at.isoformat(),
            "lastSeen": d.last_seen.isoformat(),
            "identityUpdatedAt": _iso(d.identity_updated_at),
            "appliedRevision": d.applied_revision,
            "appliedAt": _iso(d.applied_at),
            "timeToEnforce": None if took is None else took.total_seconds(),
            "behindSince": _iso(self.behind_since),
            "stale": self.stale,
        }


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
    requested_groups: Sequence[str] | None = None,
    os_version: str = "",
    agent_version: str = "",
) -> tuple[Device, str]:
    """Create or re-enrol a device; returns it and its new token (the old token stops working).

    `groups` are the groups the server decided for it (its enrolment secret's, the policy's
    hostname patterns'); a device an admin assigned groups to keeps those instead.
    `requested_groups` (default: `groups`) is what the device asked for, recorded only.
    """
    token = new_token()
    now = utcnow()
    values: dict[str, Any] = {
        "hostname": hostname,
        "os": os,
        "os_version": os_version,
        "agent_version": agent_version,
        "user": user,
        "local_ips": json.dumps(list(local_ips)),
        "identity_updated_at": now,
        "groups": json.dumps(sorted(set(groups))),
        "requested_groups": json.dumps(
            sorted(set(groups if requested_groups is None else requested_groups))
        ),
        "token_hash": hash_token(token),
        "token_issued_at": now,
        "next_token_hash": None,
        "enrolled_at": now,
        "last_seen": now,
    }
    with engine.begin() as conn:
        assigned = conn.execute(
            select(DEVICE.c.assigned_groups).where(DEVICE.c.device_id == device_id)
        ).scalar()
        if assigned is not None:
            values["groups"] = assigned  # an admin's assignment stands over re-enrolment
        if not _update(conn, device_id, values):
            try:
                with conn.begin_nested():
                    conn.execute(insert(DEVICE).values(device_id=device_id, **values))
            except IntegrityError:
                # Two enrolments of the same id raced; the later one wins, as re-enrolment does.
                _update(conn, device_id, values)
        row = conn.execute(select(DEVICE).where(DEVICE.c.device_id == device_id)).one()
    return _device(row), token


def assign_groups(
    engine: Engine, device_id: str, groups: Sequence[str], *, actor: str
) -> Device | None:
    """An admin puts a device in exactly `groups` (kept over re-enrolment); None: no device.
    The assignment and its audit row (``device.groups`` by `actor`) are one transaction."""
    chosen = sorted(set(groups))
    with engine.begin() as conn:
        before = conn.execute(
            select(DEVICE.c.groups).where(DEVICE.c.device_id == device_id)
        ).scalar()
        encoded = json.dumps(chosen)
        if before is None or not _update(
            conn, device_id, {"groups": encoded, "assigned_groups": encoded}
        ):
            return None
        record_change(
            conn, actor=actor, action="device.groups", target=device_id,
            details={"groups": chosen, "before": json.loads(before or "[]")},
        )  # fmt: skip
        row = conn.execute(select(DEVICE).where(DEVICE.c.device_id == device_id)).one()
    return _device(row)


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


class TokenUse(NamedTuple):
    """What a device token is, as `use_token` found it."""

    device: Device | None
    """The device it belongs to (None: no device holds it)."""
    expired: bool = False
    """It was issued longer ago than the lifetime: refuse it (the device enrols again)."""
    promoted: bool = False
    """It was the replacement handed out to the device, used for the first time: it is now
    the device's token, and the one it replaced stopped working."""


def use_token(
    engine: Engine, token: str, *, lifetime: dt.timedelta, now: dt.datetime | None = None
) -> TokenUse:
    """Look a device token up as a request presents it.

    The device's current token is valid for `lifetime` from its issue. A replacement handed
    out by `hand_out_token` is valid until the token it replaces expires; its first use makes
    it the current token (issued now) and ends the old one, so a stolen old token stops
    working as soon as the device has moved on.
    """
    now = now or utcnow()
    hashed = hash_token(token)
    with engine.begin() as conn:
        row = conn.execute(
            select(DEVICE).where(
                or_(DEVICE.c.token_hash == hashed, DEVICE.c.next_token_hash == hashed)
            )
        ).first()
        if row is None:
            return TokenUse(None)
        device = _device(row)
        if device.token_age(now) >= lifetime:
            return TokenUse(device, expired=True)
        if row.token_hash == hashed:
            return TokenUse(device)
        # Two servers may promote at once: the condition lets one write, both read the result.
        conn.execute(
            update(DEVICE)
            .where(DEVICE.c.device_id == device.device_id, DEVICE.c.next_token_hash == hashed)
            .values(token_hash=hashed, next_token_hash=None, token_issued_at=now)
        )
        row = conn.execute(select(DEVICE).where(DEVICE.c.token_hash == hashed)).first()
    return TokenUse(None) if row is None else TokenUse(_device(row), promoted=True)


def hand_out_token(engine: Engine, device_id: str, current: str) -> str | None:
    """A new token to replace `current`, recorded (as its hash) beside it; None when `current`
    is no longer the device's token.

    The old token keeps working until the new one is first used (`use_token`): an answer lost
    on the way costs nothing, the next request gets another replacement (which supersedes this
    one).
    """
    token = new_token()
    with engine.begin() as conn:
        changed = conn.execute(
            update(DEVICE)
            .where(DEVICE.c.device_id == device_id, DEVICE.c.token_hash == hash_token(current))
            .values(next_token_hash=hash_token(token))
        ).rowcount
    return token if changed else None


def get_device(conn: Connection, device_id: str) -> Device | None:
    """A device by id, or None."""
    row = conn.execute(select(DEVICE).where(DEVICE.c.device_id == device_id)).first()
    return _device(row) if row is not None else None


def update_facts(
    engine: Engine,
    device_id: str,
    *,
    hostname: str,
    os: str,
    os_version: str,
    agent_version: str,
    user: str,
    local_ips: Sequence[str],
    now: dt.datetime | None = None,
) -> bool:
    """Record what a device reports about itself; returns whether anything changed.

    An unchanged report writes nothing (a shim sends its facts at every start).
    """
    values: dict[str, Any] = {
        "hostname": hostname,
        "os": os,
        "os_version": os_version,
        "agent_version": agent_version,
        "user": user,
        "local_ips": json.dumps(list(local_ips)),
    }
    changed = or_(*(DEVICE.c[name] != value for name, value in values.items()))
    with engine.begin() as conn:
        result = conn.execute(
            update(DEVICE)
            .where(DEVICE.c.device_id == device_id, changed)
            .values(identity_updated_at=now or utcnow(), **values)
        )
    return bool(result.rowcount)


def record_applied(
    engine: Engine, device_id: str, revision: int, now: dt.datetime | None = None
) -> bool:
    """Record that a device holds `revision` (its sync cursor); a no-op when already recorded.

    `applied_at` is the first time the device named this revision, so it marks when the
    revision reached the device. The condition lives in the UPDATE: several server processes
    record it once between them.
    """
    with engine.begin() as conn:
        result = conn.execute(
            update(DEVICE)
            .where(
                DEVICE.c.device_id == device_id,
                or_(DEVICE.c.applied_revision.is_(None), DEVICE.c.applied_revision != revision),
            )
            .values(applied_revision=revision, applied_at=now or utcnow())
        )
    return bool(result.rowcount)


def _behind_since() -> Any:
    """The creation time of the first revision the device does not hold (NULL: up to date)."""
    return (
        select(func.min(REV.c.created_at))
        .where(REV.c.id > func.coalesce(DEVICE.c.applied_revision, 0))
        .scalar_subquery()
    )


def _stale(cutoff: dt.datetime) -> ColumnElement[bool]:
    """Behind since before `cutoff`; a device that never synced counts from its enrolment."""
    return and_(
        _behind_since() < cutoff,
        or_(DEVICE.c.applied_revision.is_not(None), DEVICE.c.enrolled_at < cutoff),
    )


def _filters(
    *, search: str | None, machines: Sequence[str] | None, stale_cutoff: dt.datetime | None
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if search:
        pattern = f"%{search.lower()}%"
        where.append(
            or_(
                func.lower(DEVICE.c.hostname).like(pattern),
                func.lower(DEVICE.c.device_id).like(pattern),
            )
        )
    if machines is not None:
        names = list(machines)
        where.append(
            or_(DEVICE.c.hostname.in_(names), DEVICE.c.device_id.in_(names)) if names else false()
        )
    if stale_cutoff is not None:
        where.append(_stale(stale_cutoff))
    return where


def list_devices(
    conn: Connection,
    *,
    stale_after: dt.timedelta,
    now: dt.datetime | None = None,
    search: str | None = None,
    machines: Sequence[str] | None = None,
    stale_only: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[DeviceStatus]:
    """Enrolled devices in hostname order, with where each stands against the revisions.

    `search` matches part of the hostname or the device id (any case); `machines` keeps the
    devices whose hostname or id is one of its names (the discovery reports' machine names);
    `stale_only` keeps the devices behind for longer than `stale_after`.
    """
    cutoff = (now or utcnow()) - stale_after
    applied_created = (
        select(REV.c.created_at).where(REV.c.id == DEVICE.c.applied_revision).scalar_subquery()
    )
    query = (
        select(
            DEVICE,
            applied_created.label("revision_created_at"),
            _behind_since().label("behind_since"),
            case((_stale(cutoff), True), else_=False).label("stale"),
        )
        .where(
            *_filters(search=search, machines=machines, stale_cutoff=cutoff if stale_only else None)
        )
        .order_by(DEVICE.c.hostname, DEVICE.c.device_id)
        .limit(limit)
        .offset(offset)
    )
    out = []
    for row in conn.execute(query):
        device = _device(row)
        behind = _maybe_aware(row.behind_since)
        if behind is not None and device.applied_revision is None:
            behind = max(behind, device.enrolled_at)
        out.append(
            DeviceStatus(
                device=device,
                revision_created_at=_maybe_aware(row.revision_created_at),
                behind_since=behind,
                stale=bool(row.stale),
            )
        )
    return out


def count_devices(
    conn: Connection,
    *,
    stale_after: dt.timedelta | None = None,
    now: dt.datetime | None = None,
    search: str | None = None,
    stale_only: bool = False,
) -> int:
    """How many devices are enrolled (that match `list_devices`'s filters)."""
    cutoff = None
    if stale_only:
        if stale_after is None:
            raise ValueError("stale_only needs stale_after")
        cutoff = (now or utcnow()) - stale_after
    query = select(func.count()).select_from(DEVICE)
    query = query.where(*_filters(search=search, machines=None, stale_cutoff=cutoff))
    return int(conn.execute(query).scalar_one())


def groups_of(conn: Connection, device_ids: Collection[str]) -> dict[str, tuple[str, ...]]:
    """The device groups (as the server decided them) of each of these devices."""
    ids = list(device_ids)
    found: dict[str, tuple[str, ...]] = {}
    for start in range(0, len(ids), 500):
        query = select(DEVICE.c.device_id, DEVICE.c.groups).where(
            DEVICE.c.device_id.in_(ids[start : start + 500])
        )
        found.update(
            (device_id, tuple(json.loads(groups))) for device_id, groups in conn.execute(query)
        )
    return found


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
        os_version=row.os_version,
        agent_version=row.agent_version,
        applied_revision=row.applied_revision,
        applied_at=_maybe_aware(row.applied_at),
        identity_updated_at=_maybe_aware(row.identity_updated_at),
        requested_groups=tuple(json.loads(row.requested_groups)),
        assigned_groups=(
            None if row.assigned_groups is None else tuple(json.loads(row.assigned_groups))
        ),
        token_issued_at=_maybe_aware(row.token_issued_at),
    )


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _maybe_aware(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else _aware(value)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


__all__ = [
    "LAST_SEEN_INTERVAL",
    "Device",
    "DeviceStatus",
    "TokenUse",
    "assign_groups",
    "count_devices",
    "device_for_token",
    "enroll_device",
    "get_device",
    "groups_of",
    "hand_out_token",
    "hash_token",
    "list_devices",
    "new_token",
    "record_applied",
    "touch_device",
    "update_facts",
    "use_token",
]
