"""Whether the server trusts an enrolled device's hostname, and the machine name that follows.

Discovery names a machine by its hostname, and uploaded logs name machines by hostname too. A
device chooses the hostname it reports, so a device that anyone enrolled with the shared
enrolment secret could call itself ``ceo-laptop`` and take over the history the firewall logs
gave that machine. The device's traffic is therefore rolled up under its bare hostname only when
the server trusts it: it enrolled with a group's own secret (`enforcer.api.groups`), or an admin
approved it (``enforcer devices approve``, ``POST /api/v1/devices/{id}/approve``). Otherwise it
is the machine ``hostname (device ID)``: its own row, never merged with a log machine nor with
another device claiming the same name. Each machine's sources (``logs``, ``device ID``) are
kept and shown on its page.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from sqlalchemy import Connection, Engine, select, update

from enforcer.store.audit import record_change
from enforcer.store.tables.devices import DEVICE

GROUP_SECRET = "group-secret"
ADMIN = "admin"

_UNVERIFIED = re.compile(r"^(?P<host>.+) \(device (?P<id>.+)\)$")


def machine_name(hostname: str, device_id: str, trusted_by: str) -> str:
    """The machine a device's traffic is rolled up under (see the module docstring)."""
    if not hostname:
        return device_id
    return hostname if trusted_by else f"{hostname} (device {device_id})"


def unverified_device(machine: str) -> str | None:
    """The device id in an untrusted device's machine name (None for any other name)."""
    match = _UNVERIFIED.match(machine)
    return match.group("id") if match else None


def trust_of(conn: Connection, device_ids: Collection[str]) -> dict[str, tuple[str, str]]:
    """(hostname, trusted_by) of each of these enrolled devices."""
    ids = list(device_ids)
    found: dict[str, tuple[str, str]] = {}
    for start in range(0, len(ids), 500):
        query = select(DEVICE.c.device_id, DEVICE.c.hostname, DEVICE.c.trusted_by).where(
            DEVICE.c.device_id.in_(ids[start : start + 500])
        )
        found.update((d, (h, t)) for d, h, t in conn.execute(query))
    return found


def machine_names_of(conn: Connection, device_ids: Collection[str]) -> dict[str, str]:
    """The machine name of each of these enrolled devices (unknown ids are left out)."""
    return {d: machine_name(h, d, t) for d, (h, t) in trust_of(conn, device_ids).items()}


def record_enrolment_trust(engine: Engine, device_id: str, *, group_secret: bool) -> None:
    """After an enrolment: trusted when it presented a group's secret; an admin's approval
    stands over re-enrolment (as an admin's group assignment does); otherwise not trusted."""
    with engine.begin() as conn:
        query = update(DEVICE).where(DEVICE.c.device_id == device_id)
        if group_secret:
            conn.execute(query.values(trusted_by=GROUP_SECRET))
        else:
            conn.execute(query.where(DEVICE.c.trusted_by != ADMIN).values(trusted_by=""))


def approve_device(engine: Engine, device_id: str, *, actor: str = "unknown") -> bool:
    """An admin trusts a device's hostname from now on; False: no such device. The approval
    and its audit row (``device.approve`` by `actor`) are one transaction."""
    with engine.begin() as conn:
        hostname = conn.execute(
            select(DEVICE.c.hostname).where(DEVICE.c.device_id == device_id)
        ).scalar()
        if hostname is None:
            return False
        conn.execute(update(DEVICE).where(DEVICE.c.device_id == device_id).values(trusted_by=ADMIN))
        record_change(
            conn, actor=actor, action="device.approve", target=device_id,
            details={"hostname": hostname},
        )  # fmt: skip
    return True
