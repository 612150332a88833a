"""What routes depend on: the server's context, and who is calling (an account or a device).

Admin API routes take `Authorization: Bearer <token>` of an account: the built-in ``admin``
(``ENFORCER_ADMIN_TOKEN``) or one made by ``enforcer accounts add`` (`enforcer.store.accounts`).
Reading (GET, HEAD) needs any account; changing (POST, PUT, PATCH, DELETE) needs the admin role,
so an analyst reads and exports and gets 403 on every change. Device routes take the device's
own token. Every answer to a bad credential says nothing about data: 401 for a missing or
unknown token, 403 for a valid token of the wrong kind or role.
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Annotated

import structlog
from fastapi import Depends, HTTPException, Request
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from enforcer.api.groups import GroupDecider
from enforcer.api.problems import fail
from enforcer.api.ratelimit import RateLimiter
from enforcer.api.sync_answers import SyncAnswers
from enforcer.api.watcher import RevisionWatcher
from enforcer.config import Settings
from enforcer.store.accounts import BUILTIN, Account, Role, account_for_token
from enforcer.store.devices import (
    LAST_SEEN_INTERVAL,
    Device,
    TokenUse,
    device_for_token,
    hand_out_token,
    hash_token,
    record_applied,
    touch_device,
    use_token,
)
from enforcer.store.tables.indicators import utcnow
from enforcer.wire.enrolment import NEW_TOKEN_HEADER

MAX_TOKEN_LENGTH = 512
READING_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods an analyst may use on the admin API; every other method changes something."""

log = structlog.get_logger("enforcer.api")

MAX_INT64 = (1 << 63) - 1
"""Upper bound of integer query and path parameters that reach SQL: a larger value raised
OverflowError in SQLite's driver, a 500 (found by tests/hardening/test_contract.py)."""
TOKEN_CACHE_SECONDS = 10.0
TOKEN_CACHE_SIZE = 200_000
RENEW_AFTER_SHARE = 0.5
"""A token is replaced once this share of its lifetime has passed."""
HAND_OUT_EVERY = 3600.0
"""Seconds (at most a tenth of the lifetime) between two replacements handed to one device by
one process: a device that ignores them (an older shim) must not cost a write per sync."""


@dataclass(frozen=True)
class ApiLimits:
    """Tunable limits of the API (defaults suit production; tests shrink some)."""

    enroll_per_minute: int = 20
    """Enrolment attempts per client address per minute."""
    bad_admin_tokens_per_minute: int = 100
    """Wrong tokens on the admin API per client address per minute; beyond, every admin
    request from that address (a right token too) is a 429 until the bucket refills."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Largest accepted request body."""
    max_events: int = 5_000
    """Most events in one uploaded batch."""
    poll_interval: float = 0.25
    """Seconds between two reads of the store's revision by the long-poll watcher."""
    max_delta_changes: int = 50_000
    """A delta with more change-log rows than this is sent as a snapshot instead."""


@dataclass
class ApiContext:
    """Everything a request needs, built once by `create_app` and kept on ``app.state``."""

    settings: Settings
    engine: Engine
    limits: ApiLimits
    admin_token: bytes
    enroll_secret: bytes
    watcher: RevisionWatcher
    enroll_limiter: RateLimiter
    admin_limiter: RateLimiter
    """Wrong admin tokens per client address (``bad_admin_tokens_per_minute``)."""
    events_limiter: RateLimiter
    """Events per device per minute (``events_per_minute``)."""
    migration_head: str | None
    groups: GroupDecider
    trusted_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    """``trusted_proxies``, parsed: see `client_address`."""
    _seen: dict[str, float] = field(default_factory=dict)
    _seen_lock: threading.Lock = field(default_factory=threading.Lock)
    answers: SyncAnswers = field(default_factory=SyncAnswers)
    """Sync answers, decided and rendered once per question and sent to every device asking."""
    _tokens: dict[str, tuple[Device, float]] = field(default_factory=dict)
    """SHA-256 of a device token -> (device, when looked up): see `cached_device`."""
    _handed: dict[str, float] = field(default_factory=dict)
    """device id -> when this process last handed it a replacement token."""
    _applied: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    """device id -> the revision (and its epoch) this process last recorded it holds: see
    `record_applied`."""

    def cached_device(self, token: str) -> Device | None:
        """The device of a token looked up less than `TOKEN_CACHE_SECONDS` ago, if any.

        Thousands of long-polling devices re-ask every time a revision lands; without this
        each of them costs a store query just to be recognised. A re-enrolment on this server
        forgets the device's entry at once (`forget_device`); on other replicas the old token
        is recognised for at most `TOKEN_CACHE_SECONDS` more.
        """
        hit = self._tokens.get(hash_token(token))
        if hit is None or time.monotonic() - hit[1] > TOKEN_CACHE_SECONDS:
            return None
        return hit[0]

    def remember_device(self, token: str, device: Device) -> None:
        if len(self._tokens) >= TOKEN_CACHE_SIZE:
            self._tokens.clear()
        self._tokens[hash_token(token)] = (device, time.monotonic())

    def forget_device(self, device_id: str) -> None:
        for key in [k for k, (d, _) in self._tokens.items() if d.device_id == device_id]:
            self._tokens.pop(key, None)
        self._handed.pop(device_id, None)

    @property
    def token_lifetime(self) -> dt.timedelta:
        """How long a device token is valid (``device_token_lifetime``)."""
        return dt.timedelta(seconds=self.settings.device_token_lifetime)

    async def token_renewal(self, device: Device, token: str) -> dict[str, str]:
        """Headers handing `device` a replacement for `token` once half its lifetime has
        passed ({} before, and between two hand-outs: see `HAND_OUT_EVERY`)."""
        lifetime = self.token_lifetime
        if device.token_age(utcnow()) < lifetime * RENEW_AFTER_SHARE:
            return {}
        now = time.monotonic()
        last = self._handed.get(device.device_id)
        if last is not None and now - last < min(HAND_OUT_EVERY, lifetime.total_seconds() / 10):
            return {}
        new = await run_in_threadpool(hand_out_token, self.engine, device.device_id, token)
        if new is None:
            return {}
        if len(self._handed) >= TOKEN_CACHE_SIZE:
            self._handed.clear()
        self._handed[device.device_id] = now
        log.info("device_token_handed_out", device_id=device.device_id)
        return {NEW_TOKEN_HEADER: new}

    async def record_applied(self, device_id: str, revision: int, epoch: str | None) -> None:
        """Record the revision a device holds (of `epoch`), writing only when it changed.

        Every sync request names it; a long-polling fleet re-asks with the same revision many
        times, so this process remembers what it wrote and the store sees one write per
        revision per device (the store's conditional UPDATE makes replicas agree). The epoch
        is part of what is remembered: after a restore the same number is another revision.
        """
        if self._applied.get(device_id) == (revision, epoch):
            return
        await run_in_threadpool(record_applied, self.engine, device_id, revision)
        self._applied[device_id] = (revision, epoch)

    def should_touch(self, device_id: str) -> bool:
        """Whether this process should record a sighting of the device now (once a minute)."""
        now = time.monotonic()
        with self._seen_lock:
            last = self._seen.get(device_id)
            if last is not None and now - last < LAST_SEEN_INTERVAL.total_seconds():
                return False
            self._seen[device_id] = now
            return True


def context(request: Request) -> ApiContext:
    """The server's context."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(context)]


def bearer(request: Request) -> str:
    """The bearer token of the request; 401 when there is none."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        raise fail(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})
    return token


def client_address(request: Request, ctx: ApiContext) -> str:
    """The address of the client behind a request: the peer's, or, when the peer is one of
    the ``trusted_proxies``, the nearest ``X-Forwarded-For`` address that is not a trusted
    proxy (a client can put anything at the left of that header, never at the right)."""
    peer = request.client.host if request.client else "unknown"
    nets = ctx.trusted_networks
    if not nets or not _in(peer, nets):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _in(hop, nets):
            return hop
    return peer


def _in(address: str, nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in nets)


def _same(token: str, secret: bytes) -> bool:
    return hmac.compare_digest(token.encode("utf-8", "surrogateescape"), secret)


def _lookup(ctx: ApiContext, token: str) -> Device | None:
    with ctx.engine.connect() as conn:
        return device_for_token(conn, token)


def _use(ctx: ApiContext, token: str) -> TokenUse:
    return use_token(ctx.engine, token, lifetime=ctx.token_lifetime)


def _expired(device: Device) -> HTTPException:
    log.info("device_token_expired", device_id=device.device_id)
    return fail(
        401, "device token expired; enrol again",
        {"WWW-Authenticate": 'Bearer error="invalid_token", error_description="expired"'},
    )  # fmt: skip


def _account(ctx: ApiContext, token: str) -> Account | None:
    with ctx.engine.connect() as conn:
        return account_for_token(conn, token)


async def require_account(request: Request, ctx: Ctx) -> Account:
    """The calling account (the built-in admin or a stored one). A request that changes
    something (any method but GET, HEAD, OPTIONS) needs the admin role: 403 otherwise."""
    client = client_address(request, ctx)
    locked = ctx.admin_limiter.waiting(client)
    if locked > 0:
        # Even a right token waits: a guess must not be told apart during the lock-out.
        raise fail(
            429, "too many wrong tokens from this address; retry later",
            {"Retry-After": str(math.ceil(locked))},
        )  # fmt: skip
    token = bearer(request)
    account = BUILTIN if _same(token, ctx.admin_token) else None
    if account is None:
        account = await run_in_threadpool(_account, ctx, token)
    if account is None or account.disabled_at is not None:
        ctx.admin_limiter.take(client)
        if account is not None:
            log.warning("disabled_account_refused", account=account.name, client=client)
            raise fail(401, f"the account {account.name!r} is disabled")
        if await run_in_threadpool(_lookup, ctx, token) is not None:
            raise fail(403, "a device token cannot use the admin API")
        log.warning("admin_token_refused", client=client)
        raise fail(401, "unknown token", {"WWW-Authenticate": "Bearer"})
    if request.method not in READING_METHODS and account.role is not Role.ADMIN:
        log.warning(
            "change_refused_by_role", account=account.name, role=account.role.value,
            method=request.method, path=request.url.path,
        )  # fmt: skip
        raise fail(
            403,
            f"this needs the admin role: the account {account.name!r} has the "
            f"{account.role.value} role, which reads and exports only",
        )
    return account


async def require_admin(account: Annotated[Account, Depends(require_account)]) -> str:
    """An account allowed this request (see `require_account`); returns its name, the actor
    recorded on changes."""
    return account.name


async def require_device(request: Request, ctx: Ctx) -> Device:
    """Allow an enrolled device's token only; returns the device."""
    token = bearer(request)
    if _same(token, ctx.admin_token):
        raise fail(403, "the admin token cannot act as a device; enrol the device")
    device = ctx.cached_device(token)
    if device is None:
        found = await run_in_threadpool(_use, ctx, token)
        device = found.device
        if device is None:
            raise fail(401, "unknown device token; enrol again", {"WWW-Authenticate": "Bearer"})
        if found.expired:
            raise _expired(device)
        if found.promoted:  # the token it replaced stops working here at once
            ctx.forget_device(device.device_id)
            log.info("device_token_rotated", device_id=device.device_id)
        ctx.remember_device(token, device)
    elif device.token_age(utcnow()) >= ctx.token_lifetime:
        raise _expired(device)
    if ctx.should_touch(device.device_id):
        await run_in_threadpool(touch_device, ctx.engine, device.device_id)
    return device


Admin = Annotated[str, Depends(require_admin)]
"""The calling account's name: any account may read, only the admin role may change."""
CurrentAccount = Annotated[Account, Depends(require_account)]
CurrentDevice = Annotated[Device, Depends(require_device)]
