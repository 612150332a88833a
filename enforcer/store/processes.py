"""Top processes: which programs made an app's or a machine's traffic, from the raw network events.

Only events of intercepted traffic name their process (pid, executable name and path); the
others (a proxy or DNS client that is not intercepted) are left out. The rollups keep no
process, so the range is bounded by the events' retention (``event_retention_days``).

Each query reads one index range: ``(app_id, time)`` for an app, ``(device_id, time)`` for a
machine's devices, then groups the rows of that range; benchmarks/top_processes.py measures it
on millions of events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Select, false, func, select

from enforcer.store.tables.devices import EVENT


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    """One program's share of the traffic in a range."""

    process_name: str
    process_path: str
    requests: int
    """Events (DNS answers and connections) it made."""
    bytes_up: int
    bytes_down: int
    devices: int
    """Distinct devices it ran on."""
    users: int
    """Distinct OS users it ran as."""
    last_seen: dt.datetime


def top_processes(
    conn: Connection,
    *,
    start: dt.datetime,
    end: dt.datetime,
    app_id: str | None = None,
    device_ids: Sequence[str] | None = None,
    by: Literal["requests", "bytes"] = "requests",
    limit: int = 10,
) -> list[ProcessUsage]:
    """The programs with the most requests (or bytes) in [start, end), for an app or devices.

    Exactly one of `app_id` and `device_ids` is given (an unbounded scan of every event is not
    offered).
    """
    query = top_processes_query(
        start=start, end=end, app_id=app_id, device_ids=device_ids, by=by, limit=limit
    )
    return [
        ProcessUsage(
            process_name=row.process_name,
            process_path=row.process_path,
            requests=int(row.requests),
            bytes_up=int(row.bytes_up),
            bytes_down=int(row.bytes_down),
            devices=int(row.devices),
            users=int(row.users),
            last_seen=_aware(row.last_seen),
        )
        for row in conn.execute(query)
    ]


def top_processes_query(
    *,
    start: dt.datetime,
    end: dt.datetime,
    app_id: str | None = None,
    device_ids: Sequence[str] | None = None,
    by: Literal["requests", "bytes"] = "requests",
    limit: int = 10,
) -> Select[Any]:
    """The statement `top_processes` runs (tests read its plan)."""
    if (app_id is None) == (device_ids is None):
        raise ValueError("give exactly one of app_id and device_ids")
    e = EVENT.c
    requests = func.count().label("requests")
    up = func.coalesce(func.sum(e.bytes_up), 0).label("bytes_up")
    down = func.coalesce(func.sum(e.bytes_down), 0).label("bytes_down")
    query = select(
        e.process_name,
        e.process_path,
        requests,
        up,
        down,
        func.count(e.device_id.distinct()).label("devices"),
        func.count(e.user.distinct()).label("users"),
        func.max(e.time).label("last_seen"),
    ).where(e.time >= start, e.time < end, e.process_name != "")
    if app_id is not None:
        query = query.where(e.app_id == app_id)
    elif device_ids:
        query = query.where(e.device_id.in_(list(device_ids)))
    else:
        query = query.where(false())
    order = (requests.desc(),) if by == "requests" else ((up + down).desc(), requests.desc())
    return (
        query.group_by(e.process_name, e.process_path)
        .order_by(*order, e.process_name, e.process_path)
        .limit(limit)
    )


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
