"""The shim agent: one asyncio loop running the DNS and proxy front ends, sync and reporting.

Wiring only, in the order that makes a restart safe:

1. identity (device id from the state directory) and the local indicator cache;
2. the cache is loaded into one `Matcher` *before* any listener opens, so a restarted or
   offline device enforces its last known set from its first query;
3. the DNS front end (``ready`` when a set was loaded: with ``fail_closed`` it refuses queries
   until the first set arrives) and the proxy front end share that matcher, and report events
   to the `Reporter`;
4. the sync client mutates the same matcher in place; the reporter spools and sends events;
   the facts reporter tells the server when the host's hostname, OS or addresses change.

`stop` closes the listeners first (no new events), then flushes the reporter to the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
import structlog

from enforcer.catalog import load_catalog
from enforcer.decide.matcher import Matcher
from enforcer.gcpause import keep_out_of_collections
from enforcer.shim.dns.answer import DnsFrontEnd, DnsSettings
from enforcer.shim.dns.server import DnsServerHandle, run_dns
from enforcer.shim.indicator_cache import Condition, IndicatorCache, open_cache, recover
from enforcer.shim.intercept.service import Interception, InterceptSettings, Wiring
from enforcer.shim.proxy.bypass import BypassStore
from enforcer.shim.proxy.frontend import ProxyFrontEnd, start_proxy
from enforcer.shim.proxy.notify import Notifier
from enforcer.shim.proxy.parent import ParentProxy
from enforcer.shim.report.facts import DEFAULT_INTERVAL as FACTS_INTERVAL
from enforcer.shim.report.facts import FactsReporter
from enforcer.shim.report.identity import DeviceIdentity, load_identity, secure_state_dir
from enforcer.shim.report.reporter import Reporter
from enforcer.shim.report.spool import DEFAULT_MAX_EVENTS, Spool
from enforcer.shim.sync import DEFAULT_WAIT, DeviceIndicators, ServerSession, SyncClient

log = structlog.get_logger(__name__)
_F = TypeVar("_F")

CACHE_FILE = "indicators.sqlite"
SPOOL_FILE = "events.sqlite"
JOURNAL_DIR = "journal"
BYPASS_FILE = "bypasses.json"


class AgentFailed(Exception):
    """The sync or reporter loop died: the shim stopped so that it can be restarted."""


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """Everything `enforcer shim` is told on its command line."""

    server: str
    """Base URL of `enforcer serve`, e.g. ``http://127.0.0.1:8440``."""
    enroll_secret: str
    state_dir: Path
    """Device id, token, indicator cache, event spool and bypasses live here."""
    dns: DnsSettings = field(default_factory=DnsSettings)
    proxy_host: str = "127.0.0.1"
    proxy_port: int = 3128
    proxy: bool = True
    """Run the proxy front end (off: DNS only)."""
    allow_clients: tuple[str, ...] | None = None
    """Networks (CIDR) a DNS or proxy listener beyond loopback serves besides loopback; None:
    the private networks (`enforcer.shim.clients`)."""
    groups: tuple[str, ...] = ()
    sync_wait: float = DEFAULT_WAIT
    spool_max_events: int = DEFAULT_MAX_EVENTS
    notifier: Notifier | None = None
    """Desktop notifier for the proxy (None: the platform's)."""
    intercept: InterceptSettings | None = None
    """Divert every process's DNS and web traffic to the shim (Linux, nftables); None: off."""
    facts_interval: float = FACTS_INTERVAL
    """Seconds between two reads of the host's facts (a change is reported to the server)."""
    parent_proxy: ParentProxy | None = None
    """Relay allowed traffic, and talk to a server that is not on loopback, through this
    proxy; None: directly."""


class Agent:
    """A running shim: `start` it, read its addresses, `stop` it."""

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.matcher = Matcher()
        self.device: DeviceIdentity | None = None
        self.dns: DnsFrontEnd | None = None
        self.proxy: ProxyFrontEnd | None = None
        self.sync: SyncClient | None = None
        self.reporter: Reporter | None = None
        self.facts: FactsReporter | None = None
        self.dns_address: tuple[str, int] | None = None
        self.proxy_address: tuple[str, int] | None = None
        self._dns_handle: DnsServerHandle | None = None
        self._proxy_server: asyncio.Server | None = None
        self._session: ServerSession | None = None
        self._cache: IndicatorCache | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.interception: Interception | None = None
        self.failed = asyncio.Event()
        """Set when the sync or reporter loop died of an unexpected error."""
        self.degraded: dict[str, str] = {}
        """State files the disk did not let the shim keep as usual, by part ("cache", "spool",
        "journal"): what it does instead ("read_only", "damaged", "memory", "unavailable")."""

    async def start(self) -> None:
        """Load the cache, open the listeners, start syncing and reporting."""
        cfg = self.settings
        state = cfg.state_dir
        secure_state_dir(state)  # the token, cache, spool and bypasses: 0700/0600
        device = self.device = load_identity(state, cfg.groups)
        cache, held = self._load_cache(state / CACHE_FILE, device.groups)
        self._cache = cache
        loaded = cache.revision is not None or len(self.matcher) > 0
        log.info(
            "shim.starting",
            device_id=device.device_id,
            hostname=device.hostname,
            user=device.user,
            local_ips=device.local_ips,
            groups=device.groups,
            server=cfg.server,
            state_dir=str(state),
            cached_revision=cache.revision,
            indicators=len(self.matcher),
            parent_proxy=cfg.parent_proxy.authority if cfg.parent_proxy else None,
        )
        spool = self._open_spool(state / SPOOL_FILE)
        marks = Wiring(cfg.intercept, cfg.server)
        client = marks.client
        if cfg.parent_proxy is not None and not _on_loopback(cfg.server):
            client = _client_via(cfg.server, cfg.parent_proxy, marks.mark)
        session = self._session = ServerSession(
            cfg.server, cfg.enroll_secret, device, state, client=client
        )
        reporter = self.reporter = Reporter(spool, device, session, journal_dir=state / JOURNAL_DIR)
        if reporter.journal is None:
            self.degraded["journal"] = "unavailable"
        dns = self.dns = DnsFrontEnd(
            self.matcher,
            marks.dns(cfg.dns),
            on_event=marks.dns_events(reporter.on_event),
            ready=loaded,
        )
        dns.event_batch = reporter  # one journal write per pass of UDP answers, before them
        self.sync = SyncClient(
            session, self.matcher, held, cache, wait=cfg.sync_wait, on_ready=self._ready
        )
        self._dns_handle = await run_dns(dns, allow_clients=cfg.allow_clients)
        self.dns_address = self._dns_handle.address
        if cfg.proxy:
            self.proxy = ProxyFrontEnd(
                self.matcher,
                bypasses=BypassStore(state / BYPASS_FILE),
                on_event=reporter.on_event,
                notifier=cfg.notifier,
                user=device.user or None,
                app_names=_app_names(),
                connect=marks.connect,
                parent=cfg.parent_proxy,
            )
            self._proxy_server = await start_proxy(
                self.proxy, cfg.proxy_host, cfg.proxy_port, allow_clients=cfg.allow_clients
            )
            self.proxy_address = (self.proxy.pages_host, self.proxy.pages_port)
            self.interception = marks.interception(dns, self.proxy)
        if self.interception is not None:
            await self.interception.start()
        self.facts = FactsReporter(
            session, device, on_change=self._identity_changed, interval=cfg.facts_interval
        )
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.sync.run(), name="sync"),
            loop.create_task(reporter.run(), name="reporter"),
            loop.create_task(self.facts.run(), name="facts"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._task_done)
        # What start-up built (the cached indicator set above all) lives as long as the shim:
        # the collector's passes need not walk it while connections wait.
        keep_out_of_collections()

    def _load_cache(
        self, path: Path, groups: tuple[str, ...]
    ) -> tuple[IndicatorCache, DeviceIndicators]:
        """The cache and the set to enforce from the first query on (into `self.matcher`).

        A damaged cache is not the end of enforcement: the last good copy and what can still
        be read of the damaged file are enforced until the server's whole set has replaced
        them (the fresh cache has no revision, so the first sync asks for a snapshot, which
        `DeviceIndicators.apply` swaps in domain by domain, removing what is gone). Starting
        from an empty matcher left the device open until the server answered, which for a
        laptop on a plane can be hours. A read-only cache is enforced as it is, and is not
        mistaken for a damaged one.
        """
        cache, condition = open_cache(path)
        if cache is not None:
            if condition is Condition.READ_ONLY:
                self.degraded["cache"] = str(condition)
                log.error("shim.cache_read_only", path=str(path),
                          detail="enforcing it; updates are applied in memory only")  # fmt: skip
            try:
                return cache, SyncClient.load_cache(cache, groups, self.matcher)
            except (sqlite3.DatabaseError, ValueError):
                log.exception("shim.cache_unreadable", path=str(path))
                with contextlib.suppress(sqlite3.Error):
                    cache.close()
                self.matcher = Matcher()
        self.degraded["cache"] = str(Condition.DAMAGED)
        held = DeviceIndicators(groups)
        held.load(recover(path), self.matcher)
        log.warning("shim.cache_recovered", path=str(path), indicators=len(self.matcher))
        try:
            _set_aside(path)
            return IndicatorCache(path), held
        except (OSError, sqlite3.Error):
            log.exception("shim.cache_not_writable", path=str(path))
            return IndicatorCache(Path(":memory:")), held

    def _open_spool(self, path: Path) -> Spool:
        """The event spool; in memory (with what the file holds) when the disk takes no file."""
        max_events = self.settings.spool_max_events
        try:
            return _open_or_reset(lambda p: Spool(p, max_events=max_events), path)
        except (OSError, sqlite3.Error):
            log.exception("shim.spool_not_writable", path=str(path),
                          detail="events are kept in memory until sent")  # fmt: skip
            self.degraded["spool"] = "memory"
            return Spool.in_memory(max_events=max_events, source=path)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        # The loops retry every expected failure; an exception here is a bug. A shim that
        # silently stopped syncing would enforce a stale set forever: stop, and let the
        # service manager restart it.
        log.error("shim.task_failed", task=task.get_name(), exc_info=exc)
        self.failed.set()

    def _identity_changed(self, device: DeviceIdentity) -> None:
        """The host's facts changed: later events and a re-enrolment carry the new ones."""
        self.device = device
        if self._session is not None:
            self._session.device = device
        if self.reporter is not None:
            self.reporter.device = device

    def _ready(self) -> None:
        if self.dns is not None and not self.dns.ready:
            self.dns.ready = True
            log.info("shim.ready", indicators=len(self.matcher))

    async def stop(self) -> None:
        """Close listeners, stop the tasks, flush the event spool and close the files."""
        if self.interception is not None:
            await self.interception.stop()
        if self._proxy_server is not None:
            self._proxy_server.close()
        if self._dns_handle is not None:
            self._dns_handle.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._proxy_server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._proxy_server.wait_closed()
        if self._dns_handle is not None:
            await self._dns_handle.wait_closed()
        if self.reporter is not None:
            await self.reporter.aclose()
            log.info("shim.stopped", **self.reporter.stats)
        if self._session is not None:
            await self._session.aclose()
        if self._cache is not None:
            self._cache.close()


def _on_loopback(url: str) -> bool:
    """Whether a URL's host is this machine (a parent proxy could not reach it)."""
    host = (urlsplit(url).hostname or "").lower()
    return host == "localhost" or host == "::1" or host.startswith("127.")


def _client_via(server: str, parent: ParentProxy, mark: int) -> httpx.AsyncClient:
    """The server session's HTTP client, going through the parent proxy (marked sockets when
    intercepting, so the connection to the parent is not diverted back into the shim)."""
    options = [(socket.SOL_SOCKET, socket.SO_MARK, mark)] if mark else None
    transport = httpx.AsyncHTTPTransport(proxy=parent.url, socket_options=options)
    return httpx.AsyncClient(base_url=server.rstrip("/"), transport=transport)


def _app_names() -> dict[str, str]:
    """Catalog display names ("Mega" for ``mega``) for the proxy's pages and notifications."""
    try:
        return {app_id: app.name for app_id, app in load_catalog().apps.items()}
    except Exception:  # the names are a nicety: a broken catalog must not stop enforcement
        log.exception("shim.catalog_unreadable")
        return {}


def _set_aside(path: Path) -> None:
    """Move a damaged SQLite file (and its WAL files) out of the way, keeping it for a post-mortem."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for suffix in ("", "-wal", "-shm"):
        part = path.with_name(path.name + suffix)
        if part.exists():
            part.replace(part.with_name(f"{part.name}.damaged-{stamp}"))


def _open_or_reset(open_file: Callable[[Path], _F], path: Path) -> _F:
    """Open a state file; a damaged one is set aside and started afresh (the shim must start:
    the server resends the set, and a damaged spool's events are lost either way). In a
    directory that takes no writes the error is raised: the file is not damaged."""
    try:
        return open_file(path)
    except sqlite3.DatabaseError:
        if not os.access(path.parent, os.W_OK):
            raise
        log.exception("shim.state_file_unreadable", path=str(path))
        _set_aside(path)
        return open_file(path)


async def run_agent(
    settings: AgentSettings, stop: asyncio.Event, *, metrics_listen: str | None = None
) -> None:
    """Run the shim until `stop` is set (the CLI sets it on SIGTERM/SIGINT)."""
    agent = Agent(settings)
    try:
        await agent.start()
        _on_hangup(agent)
        log.info("shim.running", sighup="spools the events held in memory")
        if metrics_listen:
            _serve_metrics(agent, metrics_listen)
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(agent.failed.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
    finally:
        await agent.stop()
    if agent.failed.is_set():
        raise AgentFailed("a shim task failed (see the shim.task_failed log event)")


_HANGUPS: set[asyncio.Task[int]] = set()


def _on_hangup(agent: Agent) -> None:
    """SIGHUP (a closed terminal, `systemctl reload`, log rotation) must not stop the shim: it
    spools the events it holds in memory instead (settings are read at start only)."""

    def hangup() -> None:
        log.info("shim.sighup", action="events spooled; settings are read at start only")
        if agent.reporter is not None:
            task = asyncio.get_running_loop().create_task(agent.reporter.flush())
            _HANGUPS.add(task)  # a reference until it is done
            task.add_done_callback(_HANGUPS.discard)

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hangup)


def _serve_metrics(agent: Agent, listen: str) -> None:
    """Prometheus metrics of this shim on their own (loopback) HTTP port."""
    from prometheus_client import CollectorRegistry, start_http_server

    from enforcer.shim.prometheus import ShimCollector

    host, _, port = listen.rpartition(":")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ShimCollector(agent))
    start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
    log.info("shim.metrics", listen=listen)
