"""The sync client: enrol once, then long-poll the server for indicator deltas and apply them live.

The device enrols with the shared enrolment secret and keeps the device token it gets back
(`identity.save_token`, mode 0600). Then it asks ``GET /api/v1/sync?since=REV&wait=30``: the
server answers at once when the device is behind, or holds the request until something changes
(or ``wait`` runs out), so a new block reaches the device within about a second without
polling load.

Applying a delta, without stalling queries and without doubling memory:

* `DeviceIndicators` keeps, per domain, the in-scope indicators the device received, as
  (scope, action, app) -- not the whole `Indicator`, which lives in the on-disk cache;
* a delta first updates that table (cheap dict work, in steps that yield to the event loop),
  collecting the touched domains; then each touched domain's effective entry is recomputed with
  `enforcer.decide.scope` rules (a group-scoped indicator beats an all-devices one) and swapped into
  the *live* matcher with ``remove`` + ``add`` in one synchronous step, so a query sees either
  the old or the new entry for a domain, never a gap;
* a snapshot (``snapshot: true``) is turned into the same kind of delta by comparing it with
  the current table: no second matcher is ever built.

Failure handling: the server being down, slow or wrong never clears the set: the device keeps
enforcing what it has and retries with full-jitter exponential backoff (0.5 s doubling to
60 s), which spreads a fleet's reconnections after an outage. A rejected token (401) means the
server forgot the device, or the token expired: the token is dropped and the device enrols
again. Tokens expire; before that, a sync answer hands the device a replacement, which is
saved (0600) and used from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Collection, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import structlog

from enforcer.decide.matcher import MatchEntry, Matcher
from enforcer.decide.scope import effective_indicators, in_scope
from enforcer.gcpause import keep_out_of_collections, paused_gc
from enforcer.models import Action, Indicator, normalize
from enforcer.shim.indicator_cache import IndicatorCache
from enforcer.shim.piecewise_json import iter_loads
from enforcer.shim.report import identity
from enforcer.shim.report.identity import DeviceIdentity
from enforcer.wire.enrolment import NEW_TOKEN_HEADER, EnrollResponse
from enforcer.wire.indicators import from_sync_entry, sync_remove_key

log = structlog.get_logger(__name__)

FREEZE_AFTER = 10_000
"""Domains an update must touch (a snapshot always does) to be frozen out of the collector."""

API = "/api/v1"
DEFAULT_WAIT = 30
"""Seconds the server may hold a sync request when nothing changed."""


class EnrolmentError(Exception):
    """The server refused to enrol this device (wrong secret): retrying does not help by itself."""


CACHE_RETRY = 300.0
"""Seconds between attempts to bring a cache that a failing disk left behind up to date."""


class ServerError(Exception):
    """The server answered something the contract does not allow; retried with backoff."""


class Backoff:
    """Full-jitter exponential backoff: a delay drawn from [0, min(cap, base * 2**attempt)].

    Full jitter (rather than a fixed doubling) spreads the reconnections of many devices after
    a server outage over the whole window instead of sending them in synchronised waves.
    """

    def __init__(self, base: float = 0.5, cap: float = 60.0) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call widens the window."""
        ceiling = min(self.cap, self.base * 2**self.attempt)
        self.attempt += 1
        return random.uniform(0, ceiling)

    def reset(self) -> None:
        """Start again from the smallest window (after a success)."""
        self.attempt = 0


class ServerSession:
    """The device's HTTP session with the server: enrolment, the device token, 401 recovery.

    Shared by the sync client and the event reporter, so a rejected token is replaced once for
    both (enrolment is serialised by a lock).
    """

    def __init__(
        self,
        server: str,
        enroll_secret: str,
        device: DeviceIdentity,
        state_dir: Path,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.device = device
        self.state_dir = state_dir
        self._secret = enroll_secret
        self._client = client or httpx.AsyncClient(base_url=server.rstrip("/"))
        self._token = identity.read_token(state_dir)
        self._lock = asyncio.Lock()
        groups = tuple(sorted(set(device.groups)))
        if self._token is not None and identity.enrolled_groups(state_dir) != groups:
            # The server scopes indicators by the groups a device enrolled with.
            log.info("sync.groups_changed", groups=groups)
            self._token = None

    @property
    def enrolled(self) -> bool:
        """A device token is held (from the state directory or a fresh enrolment)."""
        return self._token is not None

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()

    async def enrol(self) -> str:
        """Enrol this device and keep its token; honours 429 Retry-After."""
        while True:
            response = await self._client.post(
                f"{API}/enroll", json=self.device.enrol_body(self._secret), timeout=15
            )
            if response.status_code == 429:
                delay = retry_after(response)
                log.warning("sync.enrol_rate_limited", retry_after=delay)
                await asyncio.sleep(delay)
                continue
            if response.status_code in (401, 403):
                raise EnrolmentError(
                    f"enrolment refused ({response.status_code}): check the secret"
                )
            if response.status_code not in (200, 201):
                raise ServerError(
                    f"enrolment answered {response.status_code}: {response.text[:300]}"
                )
            try:
                token = EnrollResponse.model_validate_json(response.content).device_token
            except ValueError:  # a maintenance page or captive portal answering 200
                raise ServerError(
                    f"enrolment answered {response.status_code} with something other than the "
                    f"API's answer: {response.text[:200]!r}"
                ) from None
            identity.save_token(self.state_dir, token, self.device.groups)
            self._token = token
            log.info("sync.enrolled", device_id=self.device.device_id, groups=self.device.groups)
            return token

    async def _current_token(self, rejected: str | None = None) -> str:
        async with self._lock:
            if self._token is None or self._token == rejected:
                if rejected is not None:
                    identity.forget_token(self.state_dir)
                    self._token = None
                await self.enrol()
            assert self._token is not None
            return self._token

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send an authenticated request; on 401 enrol again once and retry.

        A replacement token the server hands out (``Enforcer-Device-Token``, before the
        current one expires) is kept, like the enrolment's, and used from then on.
        """
        token = await self._current_token()
        headers = dict(kwargs.pop("headers", None) or {})
        for attempt in range(2):
            headers["Authorization"] = f"Bearer {token}"
            response = await self._client.request(method, f"{API}{path}", headers=headers, **kwargs)
            renewed = response.headers.get(NEW_TOKEN_HEADER)
            if renewed:
                await self._renew(token, renewed)
            if response.status_code != 401 or attempt:
                return response
            if _problem_detail(response).startswith("device token expired"):
                log.warning("sync.token_expired", device_id=self.device.device_id)
            else:
                log.warning("sync.token_rejected", device_id=self.device.device_id)
            token = await self._current_token(rejected=token)
        return response

    async def _renew(self, sent: str, renewed: str) -> None:
        """Keep the server's replacement for `sent` (unless the token changed meanwhile)."""
        async with self._lock:
            if self._token != sent:
                return
            self._token = renewed  # used from now on, even if the disk refuses it
            try:
                identity.save_token(self.state_dir, renewed, self.device.groups)
            except OSError as exc:
                # After a restart the old token is read back: refused once the new one was
                # used, and the device enrols again.
                log.error("sync.token_not_saved", error=repr(exc))
                return
        log.info("sync.token_renewed", device_id=self.device.device_id)


def _problem_detail(response: httpx.Response) -> str:
    """The ``detail`` of a problem-details answer ('' when it is something else)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    detail = body.get("detail") if isinstance(body, dict) else None
    return detail if isinstance(detail, str) else ""


def retry_after(response: httpx.Response, default: float = 5.0) -> float:
    """Seconds a 429 asks to wait (its Retry-After in seconds), else `default`."""
    with contextlib.suppress(ValueError):
        return max(0.0, float(response.headers.get("Retry-After", default)))
    return default


class Update(NamedTuple):
    """One sync answer, parsed: the new revision and what changed."""

    revision: int
    snapshot: bool
    upserts: list[Indicator]
    removes: list[tuple[str, str]]
    """(scope, value) pairs."""
    epoch: str | None = None
    """The revision's epoch, sent back with it (None from a server older than epochs)."""


async def receive_update(content: bytes, step: float = 0.001) -> Update:
    """Parse a sync answer on the event loop, yielding to it every `step` seconds of work.

    Neither `json.loads` (one C call that holds the GIL for the whole answer: 0.3 s for 100,000
    indicators) nor a worker thread (every system call of the DNS loop then waits for the GIL)
    lets DNS answers through meanwhile; see `enforcer.shim.piecewise_json`. An answer that is
    not the API's (a maintenance page, a captive portal) raises ServerError.
    """
    with paused_gc():
        try:
            # JSON is UTF-8 (RFC 8259); `response.text` would first guess the body's charset.
            body = await _drain(iter_loads(content.decode("utf-8")), step)
        except ValueError as exc:
            raise ServerError(f"sync answer is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ServerError("sync answer is not a JSON object")
        try:
            upserts: list[Indicator] = []
            removes: list[tuple[str, str]] = []
            await _paced(
                body.get("upserts", ()), lambda item: upserts.append(from_sync_entry(item)), step
            )
            await _paced(
                body.get("removes", ()), lambda item: removes.append(sync_remove_key(item)), step
            )
            return _update(body, upserts, removes)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ServerError(f"malformed sync answer: {exc!r}") from exc


async def _drain(parser: Generator[None, None, Any], step: float) -> Any:
    """Run `parser` to its end, yielding to the event loop every `step` seconds of work."""
    clock = time.perf_counter
    deadline = clock() + step
    count = 0
    while True:
        try:
            next(parser)
        except StopIteration as done:
            return done.value
        count += 1
        if count % 100 == 0 and clock() >= deadline:
            await asyncio.sleep(0)
            deadline = clock() + step


def parse_update(body: dict[str, Any]) -> Update:
    """Turn a ``GET /sync`` body (a `SyncBody`) into an `Update`; a malformed one raises
    ServerError."""
    try:
        upserts = [from_sync_entry(item) for item in body.get("upserts", ())]
        removes = [sync_remove_key(item) for item in body.get("removes", ())]
        return _update(body, upserts, removes)
    except (KeyError, TypeError, ValueError) as exc:
        raise ServerError(f"malformed sync answer: {exc!r}") from exc


def _update(
    body: dict[str, Any], upserts: list[Indicator], removes: list[tuple[str, str]]
) -> Update:
    epoch = body.get("epoch")
    if epoch is not None and not isinstance(epoch, str):
        raise TypeError(f"epoch is not a string: {epoch!r}")
    return Update(int(body["revision"]), bool(body.get("snapshot")), upserts, removes, epoch)


class _Held(NamedTuple):
    """What the device keeps of one indicator to recompute a domain's entry."""

    scope: str
    action: Action
    app_id: str


@dataclass
class DeviceIndicators:
    """The in-scope indicators this device holds, by domain, and the matcher they feed.

    Only what the scope rules need is kept per indicator (scope, action, app); titles and
    severities live in the on-disk cache. Those few values repeat across a million domains,
    so the one-indicator tuples are shared (like the matcher's rules): a domain costs its key
    and a dict slot here, as in the matcher.
    """

    groups: Collection[str]
    by_domain: dict[str, tuple[_Held, ...]] = field(default_factory=dict)
    step: float = 0.001
    """Seconds of work between two yields to the event loop while applying a delta."""
    _shared: dict[_Held, tuple[_Held]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.by_domain)

    def keys(self) -> Iterator[tuple[str, str]]:
        """Every held (scope, domain)."""
        for domain, held in self.by_domain.items():
            for h in held:
                yield (h.scope, domain)

    def effective(self, domain: str) -> MatchEntry | None:
        """The entry the matcher should hold for `domain`, by `enforcer.decide.scope` rules."""
        held = self.by_domain.get(domain)
        if not held:
            return None
        if len(held) == 1:  # the common case: a single in-scope indicator is the entry
            return MatchEntry(domain, held[0].action, held[0].app_id)
        candidates = (Indicator(domain, h.action, scope=h.scope, app_id=h.app_id) for h in held)
        chosen = effective_indicators(candidates, self.groups).get(domain)
        return None if chosen is None else MatchEntry(domain, chosen.action, chosen.app_id)

    def _put(self, indicator: Indicator) -> str | None:
        domain = _domain(indicator.value)
        if domain is None or not in_scope(indicator, self.groups):
            return None
        new = _Held(indicator.scope, indicator.action, indicator.app_id)
        held = self.by_domain.get(domain)
        if held is not None and new in held:
            return None  # unchanged (a snapshot repeats most of the set): nothing to swap
        kept = tuple(h for h in held if h.scope != indicator.scope) if held else ()
        self.by_domain[domain] = (*kept, new) if kept else self._single(new)
        return domain

    def _single(self, held: _Held) -> tuple[_Held]:
        shared = self._shared.get(held)
        if shared is None:
            shared = self._shared[held] = (held,)
        return shared

    def _drop(self, scope: str, value: str) -> str | None:
        domain = _domain(value)
        held = self.by_domain.get(domain) if domain else None
        if not held or domain is None:
            return None
        kept = tuple(h for h in held if h.scope != scope)
        if len(kept) == len(held):
            return None
        if kept:
            self.by_domain[domain] = self._single(kept[0]) if len(kept) == 1 else kept
        else:
            del self.by_domain[domain]
        return domain

    def load(self, indicators: Iterable[Indicator], matcher: Matcher) -> None:
        """Fill an empty table and matcher at start (before the servers listen: no pacing)."""
        touched = {d for d in map(self._put, indicators) if d is not None}
        for domain in touched:
            entry = self.effective(domain)
            if entry is not None:
                matcher.add(entry)

    async def as_delta(self, update: Update) -> Update:
        """A snapshot expressed as a delta against what is held (removes for what is gone).

        Paced on the event loop like the apply: in a worker thread this Python loop over a
        million entries would make every system call of the DNS loop wait for the GIL.
        """
        if not update.snapshot or not self.by_domain:
            return update._replace(snapshot=False)
        incoming: set[tuple[str, str]] = set()

        def see(ind: Indicator) -> None:
            domain = _domain(ind.value)
            if domain is not None:
                incoming.add((ind.scope, domain))

        await _paced(update.upserts, see, self.step)
        gone: list[tuple[str, str]] = []
        # The table is not changed until this returns (the sync client is its only writer).
        await _paced(
            self.keys(), lambda key: None if key in incoming else gone.append(key), self.step
        )
        return update._replace(snapshot=False, removes=gone)

    async def apply(self, update: Update, matcher: Matcher) -> int:
        """Apply a delta (or snapshot) to the table and the live matcher; returns domains touched.

        Two passes, both paced: the table first (the matcher still holds the old, consistent
        set), then one remove+add per touched domain.
        """

        def swap(domain: str) -> None:
            entry = self.effective(domain)
            matcher.remove(domain)
            if entry is not None:
                matcher.add(entry)

        # A big update leaves hundreds of thousands of new tracked objects: a full collection
        # set off in the middle would stall every DNS answer for tens of milliseconds, and
        # nothing here builds cycles.
        with paused_gc():
            # Comparing a snapshot with the table reads a million entries, in steps; nothing
            # else changes the table meanwhile (the sync client is its only writer).
            delta = await self.as_delta(update) if update.snapshot else update
            touched: dict[str, None] = {}
            await _paced(delta.removes, lambda key: _touch(touched, self._drop(*key)), self.step)
            await _paced(delta.upserts, lambda ind: _touch(touched, self._put(ind)), self.step)
            await _paced(touched, swap, self.step)
        return len(touched)


def _touch(touched: dict[str, None], domain: str | None) -> None:
    if domain is not None:
        touched[domain] = None


def _domain(value: str) -> str | None:
    # The server sends normalised names; checking that is a third of the cost of normalising.
    if (
        value.isascii()
        and value.islower()
        and value[0] not in ". "
        and value[-1] not in ". "
        and ".." not in value
        and " " not in value
    ):
        return value
    try:
        return normalize(value)
    except ValueError:
        log.warning("sync.bad_indicator_value", value=value)
        return None


async def _paced(items: Iterable[Any], apply: Callable[[Any], None], step: float) -> None:
    """Call `apply` on each item, yielding to the event loop every `step` seconds of work."""
    clock = time.perf_counter
    deadline = clock() + step
    for count, item in enumerate(items, start=1):
        apply(item)
        if count % 100 == 0 and clock() >= deadline:
            await asyncio.sleep(0)
            deadline = clock() + step


class SyncClient:
    """Keeps the live matcher and the on-disk cache at the server's latest revision."""

    def __init__(
        self,
        session: ServerSession,
        matcher: Matcher,
        held: DeviceIndicators,
        cache: IndicatorCache,
        *,
        wait: float = DEFAULT_WAIT,
        backoff: Backoff | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.session = session
        self.matcher = matcher
        self.held = held
        self.cache = cache
        self.wait = wait
        self.backoff = backoff or Backoff()
        self.on_ready = on_ready
        self.revision: int | None = cache.revision
        self.epoch: str | None = cache.epoch
        """The epoch of `revision`, sent back with it: a store restored from a backup issues
        the same numbers again, and the server tells them apart by it."""
        self._groups = tuple(sorted(set(held.groups)))
        self._full = cache.groups != self._groups
        """Ask for the whole set: the cached revision was synced for other groups, so a delta
        since it would miss the older indicators of a group the device just joined."""
        self.connected = False
        self.errors = 0
        self.applied = 0
        self.cache_errors = 0
        """Updates the on-disk cache could not take (a full or read-only disk, I/O errors)."""
        self.cache_behind_since: float | None = None
        """Monotonic time of the first cache write that failed since the cache last held the
        set (None: the cache is current). Memory keeps enforcing meanwhile."""
        self._etag: str | None = None

    @classmethod
    def load_cache(
        cls, cache: IndicatorCache, groups: Collection[str], matcher: Matcher
    ) -> DeviceIndicators:
        """Read the cached set into a new table and `matcher` (call before serving)."""
        held = DeviceIndicators(groups)
        held.load(cache.indicators(), matcher)
        return held

    async def sync_once(self, wait: float = 0) -> bool:
        """One sync request; applies its answer. Returns whether anything was applied."""
        params: dict[str, Any] = {"wait": int(wait)}
        behind = self.cache_behind_since
        retry_cache = behind is not None and time.monotonic() - behind >= CACHE_RETRY
        full = self.revision is None or self._full or retry_cache
        if not full:
            params["since"] = self.revision
            if self.epoch is not None:
                params["epoch"] = self.epoch
        headers = {"If-None-Match": self._etag} if self._etag and not full else {}
        timeout = httpx.Timeout(10.0, read=wait + 15.0)
        response = await self.session.request(
            "GET", "/sync", params=params, headers=headers, timeout=timeout
        )
        self.connected = True
        if response.status_code == 304:
            return False
        if response.status_code != 200:
            raise ServerError(f"sync answered {response.status_code}: {response.text[:200]}")
        # A snapshot can be a hundred megabytes of JSON: parsed in steps between DNS answers.
        update = await receive_update(response.content, self.held.step)
        first = self.revision is None
        if (
            not first
            and not update.snapshot
            and update.revision == self.revision
            and update.epoch == self.epoch
        ):
            return False
        await self._apply(update)
        self._full = False
        self._etag = response.headers.get("ETag")
        if first and self.on_ready is not None:
            self.on_ready()
        return True

    async def _write_cache(self, update: Update) -> None:
        """Write `update` to the on-disk cache; a disk that refuses never stops enforcement.

        A failed write leaves the cache as it was (one transaction): consistent, at an older
        revision, which is what a restart then loads and syncs on from. Deltas after a failure
        are not written (they would not follow on from the cache's revision); every
        `CACHE_RETRY` seconds the next sync asks for the whole set, whose write brings the
        cache back once the disk takes it. Failures are counted and logged.
        """
        if self.cache_behind_since is not None and not update.snapshot:
            return
        try:
            await asyncio.to_thread(
                self.cache.apply,
                update.revision,
                update.upserts,
                update.removes,
                snapshot=update.snapshot,
                groups=self._groups,
                epoch=update.epoch,
            )
        except (sqlite3.Error, OSError) as exc:
            self.cache_errors += 1
            self.cache_behind_since = time.monotonic()
            log.error(
                "sync.cache_write_failed",
                error=repr(exc),
                revision=update.revision,
                cached_revision=self._cached_revision(),
                retry_in=CACHE_RETRY,
            )
            return
        if self.cache_behind_since is not None:
            log.info("sync.cache_recovered", revision=update.revision)
        self.cache_behind_since = None

    def _cached_revision(self) -> int | None:
        try:
            return self.cache.revision
        except sqlite3.Error:
            return None

    async def _apply(self, update: Update) -> None:
        started = time.perf_counter()
        # The cache first, in a thread (a big snapshot is seconds of SQLite work): a crash
        # between the two steps leaves a cache that is ahead of memory, which the restart loads.
        await self._write_cache(update)
        touched = await self.held.apply(update, self.matcher)
        if update.snapshot or touched >= FREEZE_AFTER:
            # The indicator set just built lives until the next large update: out of the
            # collector's passes (a small delta's few objects are not worth the collection).
            keep_out_of_collections()
        self.revision = update.revision
        self.epoch = update.epoch
        self.applied += 1
        log.info(
            "sync.applied",
            revision=update.revision,
            snapshot=update.snapshot,
            upserts=len(update.upserts),
            removes=len(update.removes),
            domains_touched=touched,
            indicators=len(self.matcher),
            seconds=round(time.perf_counter() - started, 3),
        )

    async def run(self) -> None:
        """Sync until cancelled: long-poll, and back off (keeping the set) on any failure."""
        wait: float = 0
        while True:
            try:
                await self.sync_once(wait)
            except asyncio.CancelledError:
                raise
            except (httpx.HTTPError, ServerError, EnrolmentError, OSError) as exc:
                self.connected = False
                self.errors += 1
                delay = self.backoff.next_delay()
                # A refused enrolment needs a person (the secret is wrong): say so loudly.
                level = logging.ERROR if isinstance(exc, EnrolmentError) else logging.WARNING
                log.log(
                    level,
                    "sync.failed",
                    error=repr(exc),
                    retry_in=round(delay, 2),
                    revision=self.revision,
                    indicators=len(self.matcher),
                )
                await asyncio.sleep(delay)
                continue
            self.backoff.reset()
            wait = self.wait
