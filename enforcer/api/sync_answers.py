"""The answers to ``GET /api/v1/sync``: a device's indicator set as a snapshot, or the delta
since a revision, as `enforcer.wire.indicators.SyncBody` JSON, decided and rendered once per
question and shared by every device that asks it (`SyncAnswers`, over
`enforcer.api.sync_cache.RenderCache`).

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

import hashlib
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import Connection, Engine
from starlette.concurrency import run_in_threadpool

from enforcer.api.sync_cache import Blob, RenderCache
from enforcer.config import Settings
from enforcer.models import Action
from enforcer.store.feed import (
    changes_since,
    count_changes_since,
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
        # Counted first: a change too large for a delta is not read row by row to learn so.
        if count_changes_since(conn, since, scopes, limit=max_changes + 1) > max_changes:
            return SyncAnswer(revision, epoch, True, held)
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


@dataclass(frozen=True, slots=True)
class Decided:
    """A sync question decided: a snapshot (its body is shared under its own key, see
    `SyncAnswers.snapshot`) or a delta with its rendered body."""

    revision: int
    epoch: str
    snapshot: bool
    held: bool
    """As `SyncAnswer.held`: the device's cursor names a revision of this store."""
    body: Blob | None = None


def _decide(cache: RenderCache, args: tuple[Any, ...]) -> Decided:
    result = answer(*args)
    if result.snapshot:
        return Decided(result.revision, result.epoch, True, result.held)
    body = cache.blob(lambda: (delta_json(result),), "delta")
    return Decided(result.revision, result.epoch, False, result.held, body)


def _store_state(engine: Engine) -> tuple[int, str, int]:
    with engine.connect() as conn:
        return (*current_epoch(conn), log_floor(conn))


def render_cache(settings: Settings) -> RenderCache:
    """A cache of rendered answers with the budgets and spill directory of `settings`."""
    directory = settings.sync_cache_dir or Path(
        platformdirs.user_cache_dir("enforcer", appauthor=False), "sync"
    )
    return RenderCache(
        memory_bytes=settings.sync_cache_memory, disk_bytes=settings.sync_cache_disk,
        spill_bytes=settings.sync_spill_bytes, directory=directory,
    )  # fmt: skip


class SyncAnswers:
    """Every sync answer the server sends, decided and rendered once per question.

    A delta is shared per (device's revision and epoch, store's revision and epoch, scopes),
    a snapshot per (store's epoch and revision, scopes), by every device asking it while it is
    in the cache: a herd of devices woken by one revision, or reconnecting after an outage,
    costs one store read and one rendering per question. The epochs are part of the keys
    because a restored store issues the same revision numbers again with other contents.
    """

    def __init__(self, cache: RenderCache | None = None) -> None:
        self.cache: RenderCache = cache or render_cache(Settings.model_construct())

    @classmethod
    def from_settings(cls, settings: Settings) -> SyncAnswers:
        """Answers cached within the budgets of `settings` (``sync_cache_*``)."""
        return cls(render_cache(settings))

    async def decide(
        self,
        engine: Engine,
        current: tuple[int, str | None] | None,
        since: int | None,
        held_epoch: str | None,
        scopes: list[str],
        limit: int,
    ) -> Decided:
        """The answer for `since` of `held_epoch` and `scopes`, the store being at `current`
        (revision, epoch) as the revision watcher saw it; None: read it from the store now
        (a short query), so that a device that does not wait gets what was just committed.
        (-1, None): the watcher does not know (not started, or failing to read the store),
        and the question is not shared."""
        floor = -1  # where delta sync starts: moves with a revision, except by hand
        epoch: str | None
        if current is None:
            revision, epoch, floor = await run_in_threadpool(_store_state, engine)
        else:
            revision, epoch = current
        args = (engine, since, held_epoch, scopes, limit)
        if revision < 0 or epoch is None:
            return await run_in_threadpool(_decide, self.cache, args)
        key = ("answer", since, held_epoch, revision, epoch, floor, tuple(scopes), limit)
        decided: Decided = await self.cache.get(key, _decide, self.cache, args)
        return decided

    async def snapshot(self, engine: Engine, revision: int, epoch: str, scopes: list[str]) -> Blob:
        """The snapshot body of `scopes` at `revision` of `epoch`, rendered once."""
        key = ("snapshot", epoch, revision, tuple(scopes))
        blob: Blob = await self.cache.get(
            key, self.cache.blob, lambda: snapshot_chunks(engine, revision, epoch, scopes),
            "snapshot",
        )  # fmt: skip
        return blob
