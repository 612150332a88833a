"""The answers to ``GET /api/v1/sync``: a device's indicator set as a snapshot, or the delta
since a revision, as `enforcer.wire.indicators.SyncBody` JSON; and the caches that let a herd of
woken devices share one store read (`SharedAnswers`, `SharedSnapshots`).

A device in groups G gets the indicators scoped to all devices ("") and to each group in G. The
store may hold a policy and a manual indicator for the same (scope, value); a device gets one
entry per (scope, value), the one with the strongest action (`Action.strength`), as
`enforcer.decide.scope` ranks them. A delta is computed from the change log only to learn *which* keys
changed; their entries are then read from the indicator table, so a delta carries the current
state (titles included) and a removal of one source's row does not hide the other's.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine
from starlette.concurrency import run_in_threadpool

from enforcer.models import Action
from enforcer.store.feed import (
    changes_since,
    count_in_scopes,
    current_revision,
    log_floor,
    sync_row_batches,
    sync_rows_of,
)
from enforcer.wire.indicators import (
    SNAPSHOT_TAIL,
    delta_body,
    snapshot_head,
    sync_entry_json,
    sync_remove_json,
)

SNAPSHOT_CHUNK = 2_000

K = TypeVar("K")
V = TypeVar("V")


def scopes_of(groups: Iterable[str]) -> list[str]:
    """The indicator scopes a device in `groups` receives."""
    return ["", *sorted(set(groups))]


def groups_tag(groups: Iterable[str]) -> str:
    """A short stable hash of a device's groups (part of the ETag: same revision, other set)."""
    return hashlib.sha256("\n".join(sorted(set(groups))).encode()).hexdigest()[:12]


def etag(revision: int, groups: Iterable[str]) -> str:
    """The ETag of a device's indicator set at `revision`."""
    return f'"{revision}-{groups_tag(groups)}"'


@dataclass(frozen=True, slots=True)
class SyncAnswer:
    """What to send: a snapshot (streamed later) or a delta (built here, its entries as JSON)."""

    revision: int
    snapshot: bool
    upserts: tuple[str, ...] = ()
    removes: tuple[str, ...] = ()


def answer(
    engine: Engine, since: int | None, scopes: Sequence[str], max_changes: int
) -> SyncAnswer:
    """Decide between snapshot and delta for a device at `since`, and build the delta."""
    with engine.connect() as conn:
        revision = current_revision(conn)
        if not since or since < log_floor(conn) or since > revision:
            return SyncAnswer(revision, True)
        if since == revision:
            return SyncAnswer(revision, False)
        rows = changes_since(conn, since, scopes, limit=max_changes + 1)
        if len(rows) > max_changes:
            return SyncAnswer(revision, True)
        # Rows committed after `revision` was read are left for the next delta.
        keys = {(r["scope"], r["value"]) for r in rows if r["revision"] <= revision}
        current = _current(conn, keys, scopes)
    upserts = tuple(current[key] for key in sorted(keys) if key in current)
    removes = tuple(
        sync_remove_json(scope, value)
        for scope, value in sorted(keys)
        if (scope, value) not in current
    )
    return SyncAnswer(revision, False, upserts, removes)


def _current(
    conn: Connection, keys: set[tuple[str, str]], scopes: Sequence[str]
) -> dict[tuple[str, str], str]:
    chosen: dict[tuple[str, str], tuple[int, str]] = {}
    for row in sync_rows_of(conn, values={value for _scope, value in keys}, scopes=scopes):
        key = (row.scope, row.value)
        if key not in keys:
            continue
        strength = _STRENGTH[row.action]
        held = chosen.get(key)
        if held is None or strength > held[0]:
            chosen[key] = (strength, sync_entry_json(*row))
    return {key: entry for key, (_strength, entry) in chosen.items()}


def delta_json(result: SyncAnswer) -> bytes:
    """The JSON body of a delta."""
    return delta_body(result.revision, result.upserts, result.removes)


def snapshot_chunks(
    engine: Engine, revision: int, scopes: Sequence[str]
) -> Generator[bytes, None, None]:
    """The JSON body of a snapshot, in chunks of a few thousand entries.

    Rows stream from a server-side cursor in (value, scope) order, so entries of the same key
    from several sources are adjacent and merged without holding the set in memory. Rows newer
    than `revision` may appear; the next delta from `revision` sends them again, harmlessly.
    This loop runs once per row of a million-row set: rows are unpacked as tuples and entries
    formatted directly by `sync_entry_json`.
    """
    yield snapshot_head(revision)
    strength_of = _STRENGTH
    entry_json = sync_entry_json
    separator = ""
    buffer: list[str] = []
    held_key: tuple[str, str] | None = None
    held_strength = 0
    held = ""
    with engine.connect() as conn:
        for rows in sync_row_batches(conn, scopes=scopes, size=SNAPSHOT_CHUNK):
            for value, scope, action, severity, app_id, alert, title in rows:
                strength = strength_of[action]
                if held_key is not None and held_key[0] == scope and held_key[1] == value:
                    if strength > held_strength:
                        held_strength = strength
                        held = entry_json(value, scope, action, severity, app_id, alert, title)
                    continue
                if held_key is not None:
                    buffer.append(held)
                held_key, held_strength = (scope, value), strength
                held = entry_json(value, scope, action, severity, app_id, alert, title)
            if buffer:
                yield (separator + ",".join(buffer)).encode()
                separator = ","
                buffer.clear()
    if held_key is not None:
        yield (separator + held).encode()
    yield SNAPSHOT_TAIL


_STRENGTH = {action.value: action.strength for action in Action}


class Shared(Generic[K, V]):
    """One blocking computation per key, however many coroutines ask for it at the same time.

    When a revision lands, every waiting device wakes at once and asks the same question; the
    first asker runs the store read in a worker thread, the others await its result. Keys carry
    the revision, so a newer revision is a new question. Failed results are not kept.
    """

    def __init__(self, compute: Callable[..., V], size: int) -> None:
        self.compute = compute
        self.size = size
        self._pending: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K, *args: Any) -> V:
        """`compute(*args)`, shared with every concurrent caller of the same `key`."""
        future = self._pending.get(key)
        if future is None or (future.done() and (future.cancelled() or future.exception())):
            if len(self._pending) >= self.size:
                self._pending.clear()
            future = asyncio.ensure_future(run_in_threadpool(self.compute, *args))
            self._pending[key] = future
        return await asyncio.shield(future)


class SharedAnswers:
    """Sync answers shared per (since, revision, scopes) by the devices a revision woke."""

    def __init__(self, size: int = 1024) -> None:
        self._shared: Shared[tuple[int | None, int, tuple[str, ...]], SyncAnswer] = Shared(
            answer, size
        )

    async def get(
        self, engine: Engine, revision: int, since: int | None, scopes: list[str], limit: int
    ) -> SyncAnswer:
        """The answer for `since` and `scopes` while the watcher is at `revision`."""
        if revision < 0:  # the watcher has not read the store yet: nothing to share safely
            return await run_in_threadpool(answer, engine, since, scopes, limit)
        return await self._shared.get(
            (since, revision, tuple(scopes)), engine, since, scopes, limit
        )


SHARED_SNAPSHOT_ENTRIES = 20_000
"""A snapshot with at most this many entries is rendered once and shared (a few MB at most)."""


def small_snapshot(engine: Engine, revision: int, scopes: Sequence[str]) -> bytes | None:
    """The whole snapshot body when it is small, else None (then each device streams its own)."""
    with engine.connect() as conn:
        count = count_in_scopes(conn, scopes=scopes)
    if count > SHARED_SNAPSHOT_ENTRIES:
        return None
    return b"".join(snapshot_chunks(engine, revision, scopes))


class SharedSnapshots:
    """Small snapshots rendered once per (revision, scopes) for a herd of woken devices.

    Devices at revision 0 (enrolled on an empty store) or below the log floor all need a
    snapshot when a revision lands; rendering it once instead of once per device is what lets
    thousands of them hear of the change within a second or two.
    """

    def __init__(self, size: int = 64) -> None:
        self._shared: Shared[tuple[int, tuple[str, ...]], bytes | None] = Shared(
            small_snapshot, size
        )

    async def get(self, engine: Engine, revision: int, scopes: list[str]) -> bytes | None:
        return await self._shared.get((revision, tuple(scopes)), engine, revision, scopes)
