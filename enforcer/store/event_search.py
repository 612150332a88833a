"""The raw network events, searched: by device, user, process, domain (with its subdomains),
action and time, newest first, a page at a time (`enforcer events list`, ``GET /api/v1/events``,
the console's machine timeline).

A page is cut by keyset, not offset: the next page starts below the last (time, id) shown, so
page 1,000 costs what page 1 costs. Each filter of a name has an index that leads with it and
is followed by time, so "newest first" is a walk down one index and stops at the page's end.

A domain matches itself and its subdomains through ``domain_rev`` (the labels reversed): the
stored names under dropbox.com are the range ``com.dropbox.`` .. ``com.dropbox/`` of the index,
listed first (one index seek per name). Their events are not in time order across names,
though, so a filter on several values (names, or the devices of one hostname) reads a time
window that grows until it holds a page: without that, the newest 100 events of names with
two million events meant sorting the two million.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    false,
    func,
    or_,
    select,
    text,
    tuple_,
)

from enforcer.store.events import EventRecord, reversed_domain
from enforcer.store.tables.devices import DEVICE, EVENT

MERGE_NAMES_MAX = 256
"""Above this many distinct names under a searched domain, the domain is searched as a range of
the index instead of one index seek per name."""
WINDOW_FIRST = dt.timedelta(minutes=1)
WINDOW_GROWTH = 4
"""The time window a search over several index values starts with, and how it grows."""


@dataclass(frozen=True, slots=True)
class EventSearch:
    """What to look for; every filter left as None matches everything."""

    device: str | None = None
    """A hostname (any case) or a device id."""
    user: str | None = None
    process: str | None = None
    """An executable name (``firefox``), or a path when it holds a ``/``."""
    domain: str | None = None
    """A name: matches it and its subdomains."""
    action: str | None = None
    since: dt.datetime | None = None
    """Events at or after this time."""
    until: dt.datetime | None = None
    """Events before this time."""


class FoundEvent(NamedTuple):
    """One stored event with its id (the tie-breaker of the order) and device."""

    id: int
    device_id: str
    event: EventRecord


class EventPage(NamedTuple):
    """The newest matching events (at most the limit) and whether more match below them."""

    events: list[FoundEvent]
    more: bool

    @property
    def last(self) -> tuple[dt.datetime, int] | None:
        """Where the next page starts (pass it as `before`), or None on the last page."""
        if not self.more or not self.events:
            return None
        return self.events[-1].event.time, self.events[-1].id


_COLUMNS = [EVENT.c.id, EVENT.c.device_id, *[EVENT.c[name] for name in EventRecord._fields]]


def search_events(
    conn: Connection,
    search: EventSearch,
    *,
    limit: int,
    before: tuple[dt.datetime, int] | None = None,
) -> EventPage:
    """The newest `limit` events matching `search`, below `before` (a previous page's last)."""
    where, several = _filters(conn, search)
    at = before[0] if before is not None else None
    where += _upper(search.until, at)
    if before is not None:
        where.append(tuple_(EVENT.c.time, EVENT.c.id) < before)  # ties on time: by id
    if several:
        top = min(t for t in (search.until, at, _now()) if t)
        rows = _newest_by_window(conn, where, limit + 1, top=top, since=search.since)
    else:
        rows = list(conn.execute(_newest([*where, *_lower(search.since)], limit + 1)))
    found = [_found(row) for row in rows[:limit]]
    return EventPage(found, len(rows) > limit)


def count_matching(conn: Connection, search: EventSearch) -> int:
    """How many stored events match `search` (all of them, not a page)."""
    where, _ = _filters(conn, search)
    where += [*_lower(search.since), *_upper(search.until, None)]
    return int(conn.execute(select(func.count()).select_from(EVENT).where(*where)).scalar_one())


# One bound of time per side: given two (a --since and a window, an --until and a cursor),
# SQLite seeks the index by the first it meets, which may be the loose one.
def _lower(since: dt.datetime | None) -> list[ColumnElement[bool]]:
    return [EVENT.c.time >= since] if since is not None else []


def _upper(until: dt.datetime | None, at: dt.datetime | None) -> list[ColumnElement[bool]]:
    if at is not None and (until is None or at < until):
        return [EVENT.c.time <= at]
    return [EVENT.c.time < until] if until is not None else []


class _Filters(NamedTuple):
    where: list[ColumnElement[bool]]
    """Every filter but time's."""
    several: bool
    """Whether a filter names several values of its index (a domain's names, a hostname's
    devices): their events are not one walk in time order."""


def _filters(conn: Connection, search: EventSearch) -> _Filters:
    where: list[ColumnElement[bool]] = []
    several = False
    if search.device is not None:
        ids = _device_ids(conn, search.device)
        where.append(EVENT.c.device_id.in_(ids) if ids else false())
        several = len(ids) > 1
    if search.domain is not None:
        column = EVENT.c.domain_rev
        key = reversed_domain(search.domain.strip().rstrip(".").lower())
        names = _names_under(conn, key)
        if names is None:
            low, high = key + ".", key + "/"
            where.append(or_(column == key, and_(column > low, column < high)))
        else:
            where.append(column.in_(names) if names else false())
        several = several or names is None or len(names) > 1
    if search.user is not None:
        where.append(EVENT.c.user == search.user)
    if search.process is not None:
        column = EVENT.c.process_path if "/" in search.process else EVENT.c.process_name
        where.append(column == search.process)
    if search.action is not None:
        where.append(EVENT.c.action == search.action)
    return _Filters(where, several)


def _newest(where: list[ColumnElement[bool]], limit: int) -> Select[Any]:
    query = select(*_COLUMNS).where(*where)
    return query.order_by(EVENT.c.time.desc(), EVENT.c.id.desc()).limit(limit)


def _newest_by_window(
    conn: Connection,
    where: list[ColumnElement[bool]],
    limit: int,
    *,
    top: dt.datetime,
    since: dt.datetime | None,
) -> list[Any]:
    """The newest `limit` rows, read from a time window below `top` that grows until it holds
    them (or reaches `since`, or the oldest event).

    For a filter on several values of an index (a domain's names, a hostname's devices) the
    database reads each value's events in the window and sorts only those: a popular name's
    page costs a few minutes of its events, a rare one's a handful of short index reads.
    """
    oldest = conn.execute(select(func.min(EVENT.c.time))).scalar()
    if oldest is None:
        return []
    floor = max(_aware(oldest), since) if since is not None else _aware(oldest)
    span = WINDOW_FIRST
    while top - span > floor:
        rows = list(conn.execute(_newest([*where, *_lower(top - span)], limit)))
        if len(rows) >= limit:
            return rows
        span *= WINDOW_GROWTH
    return list(conn.execute(_newest([*where, *_lower(since)], limit)))


def _now() -> dt.datetime:
    # Only the window's lower bound: an event stamped ahead by a fast device clock is still read.
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def _device_ids(conn: Connection, device: str) -> list[str]:
    """The devices a `--device` names: by id, or by hostname in any case."""
    query = select(DEVICE.c.device_id).where(
        or_(DEVICE.c.device_id == device, func.lower(DEVICE.c.hostname) == device.lower())
    )
    return sorted(conn.execute(query).scalars())


_NAMES_UNDER = text(
    """
    WITH RECURSIVE names(name, n) AS (
        SELECT (SELECT domain_rev FROM network_event
                WHERE domain_rev > :low AND domain_rev < :high ORDER BY domain_rev LIMIT 1), 1
        UNION ALL
        SELECT (SELECT domain_rev FROM network_event
                WHERE domain_rev > names.name AND domain_rev < :high ORDER BY domain_rev LIMIT 1),
               n + 1
        FROM names WHERE names.name IS NOT NULL AND n <= :most
    )
    SELECT name FROM names WHERE name IS NOT NULL
    """
)
"""The distinct names of a range of ``domain_rev``, one index seek each, in one statement (a
loose index scan: neither back end skips through an index by itself)."""


def _names_under(conn: Connection, key: str) -> list[str] | None:
    """The stored reversed names equal to `key` or under it; None when there are more than
    `MERGE_NAMES_MAX`."""
    column = EVENT.c.domain_rev
    names = list(conn.execute(select(column).where(column == key).limit(1)).scalars())
    params = {"low": key + ".", "high": key + "/", "most": MERGE_NAMES_MAX}
    names += conn.execute(_NAMES_UNDER, params).scalars()
    return names if len(names) <= MERGE_NAMES_MAX else None


def _found(row: Any) -> FoundEvent:
    values = list(row)
    event = EventRecord(*values[2:])
    if event.time.tzinfo is None:  # SQLite keeps the UTC wall time without its zone
        event = event._replace(time=event.time.replace(tzinfo=dt.UTC))
    return FoundEvent(int(values[0]), str(values[1]), event)


__all__ = ["EventPage", "EventSearch", "FoundEvent", "count_matching", "search_events"]
