"""The answers to ``GET /api/v1/sync``: a device's indicator set as a snapshot, or the delta
since a revision, as `enforcer.wire.indicators.SyncBody` JSON; and the caches that let a herd of
woken devices share one store read (`SharedAnswers`, `SharedSnapshots`).

A device in groups G gets the indicators scoped to all devices ("") and to each group in G. The
store may hold a policy and a manual indicator for the same (scope, value); a device gets one
entry per (scope, value), the one with the strongest action (`Action.strength`), as
`enforcer.decide.scope` ranks them. A delta is computed from the change log only to learn *which* keys
changed; their entries are then read from the indicator table, so a delta carries the current
state (titles included) and a removal of one source's row does not hide the other's.

A device names the revision it holds (``since``) and that revision's epoch (`enforcer.store.feed`):
a delta is sent only when this store issued that revision with that epoch, so a device that
synced from a store since restored from a backup (whose numbers are issued again, with other
changes) gets a snapshot. Every answer, ETag and cache key carries the epoch with the revision.
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
    current_epoch,
    epoch_at,
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


def etag(revision: int, epoch: str, groups: Iterable[str]) -> str:
    """The ETag of a device's indicator set at `revision` of `epoch`."""
    return f'"{revision}-{epoch}-{groups_tag(groups)}"'


@dataclass(frozen=True, slots=True)
class SyncAnswer:
    """What to send: a snapshot (streamed later) or a delta (built here, its entries as JSON).

    `held` says whether the device's cursor (``since`` and its epoch) names a revision of this
    store's history: only then is it recorded as the revision the device has applied.
    """

    revision: int
    epoch: str
    snapshot: bool
    held: bool
    upserts: tuple[str, ...] = ()
    removes: tuple[str, ...] = ()


def answer(
    engine: Engine,
    since: int | None,
    held_epoch: str | None,
    scopes: Sequence[str],
    max_changes: int,
) -> SyncAnswer:
    """Decide between snapshot and delta for a device at `since` of `held_epoch`, and build
    the delta. A device that names no epoch (a shim older than epochs) is trusted on its
    revision number alone."""
    with engine.connect() as conn:
        revision, epoch = current_epoch(conn)
        held = (
            since is not None
            and since <= revision
            and (held_epoch is None or held_epoch == _epoch_of(conn, since, revision, epoch))
        )
        if not since or not held or since < log_floor(conn):
            return SyncAnswer(revision, epoch, True, held)
        if since == revision:
            return SyncAnswer(revision, epoch, False, held)
        rows = changes_since(conn, since, scopes, limit=max_changes + 1)
        if len(rows) > max_changes:
            return SyncAnswer(revision, epoch, True, held)
        # Rows committed after `revision` was read are left for the next delta.
        keys = {(r["scope"], r["value"]) for r in rows if r["revision"] <= revision}
        current = _current(conn, keys, scopes)
    upserts = tuple(current[key] for key in sorted(keys) if key in current)
    removes = tuple(
        sync_remove_json(scope, value)
        for scope, value in sorted(keys)
        if (scope, value) not in current
    )
    return SyncAnswer(revision, epoch, False, held, upserts, removes)


def _epoch_of(conn: Connection, since: int, revision: int, epoch: str) -> str | None:
    return epoch if since == revision else epoch_at(conn, since)


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
    return delta_body(result.revision, result.epoch, result.upserts, result.removes)


def snapshot_chunks(
    engine: Engine, revision: int, epoch: str, scopes: Sequence[str]
) -> Generator[bytes, None, None]:
    """The JSON body of a snapshot, in chunks of a few thousand entries.

    Rows stream from a server-side cursor in (value, scope) order, so entries of the same key
    from several sources are adjacent and merged without holding the set in memory. Rows newer
    than `revision` may appear; the next delta from `revision` sends them again, harmlessly.
    This loop runs once per row of a million-row set: rows are unpacked as tuples and entries
    formatted directly by `sync_entry_json`.
    """
    yield snapshot_head(revision, epoch)
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


_AnswerKey = tuple[int | None, str | None, int, str, tuple[str, ...]]


class SharedAnswers:
    """Sync answers shared per (device's revision and epoch, store's revision and epoch,
    scopes) by the devices a revision woke. The epochs are part of the key because a restored
    store issues the same revision numbers again with other contents."""

    def __init__(self, size: int = 1024) -> None:
        self._shared: Shared[_AnswerKey, SyncAnswer] = Shared(answer, size)

    async def get(
        self,
        engine: Engine,
        current: tuple[int, str | None],
        since: int | None,
        held_epoch: str | None,
        scopes: list[str],
        limit: int,
    ) -> SyncAnswer:
        """The answer for `since` of `held_epoch` and `scopes` while the watcher has seen the
        `current` (revision, epoch)."""
        revision, epoch = current
        args = (engine, since, held_epoch, scopes, limit)
        if revision < 0 or epoch is None:  # the watcher has not read the store yet
            return await run_in_threadpool(answer, *args)
        return await self._shared.get((since, held_epoch, revision, epoch, tuple(scopes)), *args)


SHARED_SNAPSHOT_ENTRIES = 20_000
"""A snapshot with at most this many entries is rendered once and shared (a few MB at most)."""


def small_snapshot(
    engine: Engine, revision: int, epoch: str, scopes: Sequence[str]
) -> bytes | None:
    """The whole snapshot body when it is small, else None (then each device streams its own)."""
    with engine.connect() as conn:
        count = count_in_scopes(conn, scopes=scopes)
    if count > SHARED_SNAPSHOT_ENTRIES:
        return None
    return b"".join(snapshot_chunks(engine, revision, epoch, scopes))


class SharedSnapshots:
    """Small snapshots rendered once per (revision, epoch, scopes) for a herd of woken devices.

    Devices at revision 0 (enrolled on an empty store) or below the log floor all need a
    snapshot when a revision lands; rendering it once instead of once per device is what lets
    thousands of them hear of the change within a second or two.
    """

    def __init__(self, size: int = 64) -> None:
        self._shared: Shared[tuple[int, str, tuple[str, ...]], bytes | None] = Shared(
            small_snapshot, size
        )

    async def get(
        self, engine: Engine, revision: int, epoch: str, scopes: list[str]
    ) -> bytes | None:
        """The shared snapshot of `scopes` at `revision` of `epoch` (None when too big)."""
        return await self._shared.get(
            (revision, epoch, tuple(scopes)), engine, revision, epoch, scopes
        )
