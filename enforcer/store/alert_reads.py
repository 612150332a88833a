"""The store reads behind alert policies: which apps were ever rolled up, daily uploads of
machines and of users (from the rollups, every report; for the devices' events, users' uploads
from the raw events too), over a day range; the raw names seen behind users, and the device
groups of the trusted devices behind machine names."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection

from sqlalchemy import Connection, select

from enforcer.store.tables.devices import DEVICE, EVENT
from enforcer.store.tables.discovery import APP_DAY, DEV_APP, USER_APP, USER_FORM

DAY = 86_400


def known_apps(conn: Connection, app_ids: Collection[str]) -> set[str]:
    """Which of these catalog apps have usage in any report, on any day."""
    wanted = sorted(set(app_ids))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        query = (
            select(APP_DAY.c.app_id)
            .where(APP_DAY.c.app_id.in_(wanted[start : start + 500]), APP_DAY.c.domain == "")
            .distinct()
        )
        found.update(conn.scalars(query))
    return found


def device_daily_uploads(
    conn: Connection, devices: Collection[int], first_day: int, last_day: int
) -> dict[tuple[int, int, str], int]:
    """(device ordinal, day, app) -> bytes up that day, summed over every report."""
    out: dict[tuple[int, int, str], int] = {}
    c = DEV_APP.c
    wanted = sorted(set(devices))
    for start in range(0, len(wanted), 500):
        query = select(c.device, c.day, c.app_id, c.bytes_up).where(
            c.device.in_(wanted[start : start + 500]), c.day >= first_day, c.day <= last_day
        )
        for device, day, app_id, up in conn.execute(query):
            out[(device, day, app_id)] = out.get((device, day, app_id), 0) + up
    return out


def user_app_daily_uploads(
    conn: Connection, users: Collection[int], first_day: int, last_day: int
) -> dict[tuple[int, int, str], int]:
    """(user ordinal, day, app) -> bytes up that day, from the rolled-up uploads per user and
    app (every source rolled up since migration 0018), summed over every report."""
    out: dict[tuple[int, int, str], int] = {}
    c = USER_APP.c
    wanted = sorted(set(users))
    for start in range(0, len(wanted), 500):
        query = select(c.user, c.day, c.app_id, c.bytes_up).where(
            c.user.in_(wanted[start : start + 500]), c.day >= first_day, c.day <= last_day
        )
        for user, day, app_id, up in conn.execute(query):
            out[(user, day, app_id)] = out.get((user, day, app_id), 0) + up
    return out


def user_daily_uploads(
    conn: Connection, users: Collection[str], first_day: int, last_day: int
) -> dict[tuple[str, int, str], int]:
    """(user, day, domain) -> bytes up that day, from the devices' raw events (kept for the
    event retention, 30 days by default); the caller attributes domains to apps."""
    out: dict[tuple[str, int, str], int] = {}
    start_time = dt.datetime.fromtimestamp(first_day * DAY, dt.UTC)
    end_time = dt.datetime.fromtimestamp((last_day + 1) * DAY, dt.UTC)
    wanted = sorted(set(users))
    for start in range(0, len(wanted), 500):
        query = select(EVENT.c.user, EVENT.c.time, EVENT.c.domain, EVENT.c.bytes_up).where(
            EVENT.c.user.in_(wanted[start : start + 500]),
            EVENT.c.time >= start_time,
            EVENT.c.time < end_time,
            EVENT.c.bytes_up > 0,
        )
        for user, time, domain, up in conn.execute(query):
            if time.tzinfo is None:
                time = time.replace(tzinfo=dt.UTC)
            day = int(time.timestamp()) // DAY
            out[(user, day, domain)] = out.get((user, day, domain), 0) + up
    return out


def raw_forms(conn: Connection, users: Collection[str]) -> set[str]:
    """The raw names rolled up under these users (``CONTOSO\\alice`` behind ``alice``)."""
    wanted = sorted(set(users))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        query = select(USER_FORM.c.form).where(USER_FORM.c.user.in_(wanted[start : start + 500]))
        found.update(conn.scalars(query))
    return found


def trusted_machine_groups(conn: Connection, machines: Collection[str]) -> dict[str, set[str]]:
    """Machine name -> the device groups of the trusted enrolled devices with that hostname:
    a log machine is the same machine as a trusted device of its name (`enforcer.store.trust`),
    so a group-scoped alert policy watches it; an untrusted device's groups do not count."""
    wanted = sorted(set(machines))
    out: dict[str, set[str]] = {}
    for start in range(0, len(wanted), 500):
        query = select(DEVICE.c.hostname, DEVICE.c.groups).where(
            DEVICE.c.hostname.in_(wanted[start : start + 500]), DEVICE.c.trusted_by != ""
        )
        for hostname, groups in conn.execute(query):
            out.setdefault(hostname, set()).update(json.loads(groups))
    return out
