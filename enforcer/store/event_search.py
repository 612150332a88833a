"""The raw network events, searched: by device, user, process, domain (with its subdomains),
action and time, newest first, a page at a time (`enforcer events list`, ``GET /api/v1/events``,
the console's machine timeline).

A page is cut by keyset, not offset: the next page starts below the last (time, id) shown, so
page 1,000 costs what page 1 costs. Each filter of a name has an index that leads with it and
is followed by time, so "newest first" is a walk down one index and stops at the page's end.

A domain matches itself and its subdomains through ``domain_rev`` (the labels reversed): the
stored names under dropbox.com are the range ``com.dropbox.`` .. ``com.dropbox/`` of the index.
Their events are not in time order across names, though, so the names are first listed from
the index (one seek each) and the newest events of each are merged: without that, the newest
100 events of a name with a million events meant sorting the million.
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
    tuple_,
    union_all,
)

from enforcer.store.events import EventRecord, reversed_domain
from enforcer.store.tables.devices import DEVICE, EVENT

MERGE_NAMES_MAX = 64
"""Above this many distinct names under a searched domain, one query sorts their events instead
of merging per-name walks (a query of hundreds of unions costs more than it saves)."""


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
    where, keys = _filters(conn, search)
    if before is not None:
        at, last_id = before
        # The plain `time <= at` is what an index walk can seek to; the pair breaks ties.
        where += [EVENT.c.time <= at, tuple_(EVENT.c.time, EVENT.c.id) < (at, last_id)]
    # One walk per value of the key with the most values (a domain's names, a hostname's
    # devices); a single value is a plain filter the database walks by itself.
    split = max(keys, key=lambda k: len(k.values or ()), default=None)
    if split is None or len(split.values or ()) < 2:
        split = None
    where += [k.predicate for k in keys if k is not split]
    rows = conn.execute(_newest(where, split, limit + 1)).all()
    found = [_found(row) for row in rows[:limit]]
    return EventPage(found, len(rows) > limit)


def count_matching(conn: Connection, search: EventSearch) -> int:
    """How many stored events match `search` (all of them, not a page)."""
    where, keys = _filters(conn, search)
    where += [k.predicate for k in keys]
    return int(conn.execute(select(func.count()).select_from(EVENT).where(*where)).scalar_one())


class _Key(NamedTuple):
    """A filter that names several values of one indexed column."""

    column: Any
    values: list[str] | None
    """The values, or None when there are too many to walk one by one."""
    predicate: ColumnElement[bool]


def _filters(conn: Connection, search: EventSearch) -> tuple[list[ColumnElement[bool]], list[_Key]]:
    where: list[ColumnElement[bool]] = []
    keys: list[_Key] = []
    if search.device is not None:
        ids = _device_ids(conn, search.device)
        keys.append(_Key(EVENT.c.device_id, ids, EVENT.c.device_id.in_(ids) if ids else false()))
    if search.domain is not None:
        keys.append(_domain_key(conn, search.domain))
    if search.user is not None:
        where.append(EVENT.c.user == search.user)
    if search.process is not None:
        column = EVENT.c.process_path if "/" in search.process else EVENT.c.process_name
        where.append(column == search.process)
    if search.action is not None:
        where.append(EVENT.c.action == search.action)
    if search.since is not None:
        where.append(EVENT.c.time >= search.since)
    if search.until is not None:
        where.append(EVENT.c.time < search.until)
    return where, keys


def _domain_key(conn: Connection, domain: str) -> _Key:
    column = EVENT.c.domain_rev
    key = reversed_domain(domain.strip().rstrip(".").lower())
    names = _names_under(conn, key)
    if names is None:
        low, high = key + ".", key + "/"
        return _Key(column, None, or_(column == key, and_(column > low, column < high)))
    return _Key(column, names, column.in_(names) if names else false())


def _newest(where: list[ColumnElement[bool]], split: _Key | None, limit: int) -> Select[Any]:
    order = (EVENT.c.time.desc(), EVENT.c.id.desc())
    if split is None:
        return select(*_COLUMNS).where(*where).order_by(*order).limit(limit)
    walks = [
        select(*_COLUMNS).where(*where, split.column == value).order_by(*order).limit(limit)
        for value in split.values or ()
    ]
    # Each walk in a subquery of its own: SQLite refuses ORDER BY / LIMIT on a UNION's members.
    merged = union_all(*[select(*walk.subquery().c) for walk in walks]).subquery()
    return select(*merged.c).order_by(merged.c.time.desc(), merged.c.id.desc()).limit(limit)


def _device_ids(conn: Connection, device: str) -> list[str]:
    """The devices a `--device` names: by id, or by hostname in any case."""
    query = select(DEVICE.c.device_id).where(
        or_(DEVICE.c.device_id == device, func.lower(DEVICE.c.hostname) == device.lower())
    )
    return sorted(conn.execute(query).scalars())


def _names_under(conn: Connection, key: str) -> list[str] | None:
    """The stored reversed names equal to `key` or under it, one index seek each; None when
    there are more than `MERGE_NAMES_MAX`."""
    column = EVENT.c.domain_rev
    names = list(conn.execute(select(column).where(column == key).limit(1)).scalars())
    low, high = key + ".", key + "/"
    while len(names) <= MERGE_NAMES_MAX:
        after = conn.execute(
            select(func.min(column)).where(column > low, column < high)
        ).scalar_one_or_none()
        if after is None:
            return names
        names.append(after)
        low = after
    return None


def _found(row: Any) -> FoundEvent:
    values = list(row)
    event = EventRecord(*values[2:])
    if event.time.tzinfo is None:  # SQLite keeps the UTC wall time without its zone
        event = event._replace(time=event.time.replace(tzinfo=dt.UTC))
    return FoundEvent(int(values[0]), str(values[1]), event)


__all__ = ["EventPage", "EventSearch", "FoundEvent", "count_matching", "search_events"]
