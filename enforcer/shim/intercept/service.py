"""Interception as the agent runs it: the loopback listeners the table diverts to, then the table.

`Interception.start` opens, on 127.0.0.1 and ::1, a DNS listener (serving the agent's DNS front
end) and a transparent listener, and only then installs the nftables table, so no diverted
packet ever meets a closed port while the shim starts. `stop` removes the table first (traffic
flows directly again at once), then closes the listeners. A host without IPv6 loopback gets
IPv4 listeners only; the table then refuses IPv6 DNS and web traffic instead of letting it
pass unseen.

The listener ports default to privileged ones (below 1024): after a SIGKILL in fail-closed mode
the table keeps diverting to them, and an unprivileged local process must not be able to bind
them and receive every other process's DNS queries and connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import socket
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import structlog

from enforcer.models import NetworkEvent
from enforcer.shim.dns.answer import DnsFrontEnd, DnsSettings
from enforcer.shim.dns.server import DnsServerHandle, run_dns
from enforcer.shim.intercept import nft
from enforcer.shim.intercept.mark import MARK, open_marked_connection
from enforcer.shim.intercept.transparent import (
    AddressNames,
    Listener,
    TransparentFrontEnd,
    start_transparent,
)
from enforcer.shim.proxy.frontend import Connector, ProxyFrontEnd
from enforcer.shim.report.process import ProcessFinder, attribute

log = structlog.get_logger(__name__)

LOOPBACKS = ("127.0.0.1", "::1")
EventSink = Callable[[NetworkEvent], None]


@dataclass(frozen=True, slots=True)
class InterceptSettings:
    """What ``enforcer shim --intercept`` diverts, refuses and listens on."""

    ports: tuple[int, ...] = (80, 443)
    """TCP destination ports diverted to the transparent listener."""
    allow_quic: bool = False
    """Let UDP 443 through (default: refused, so browsers fall back to TCP)."""
    allow_dot: bool = False
    """Let TCP/UDP 853 (DNS over TLS/QUIC) through (default: refused)."""
    fail_mode: str = nft.FAIL_OPEN
    """What a table left by a killed shim does: "open" (``intercept off`` removes it) or
    "closed" (it stays, and diverted traffic fails until the shim is back)."""
    dns_port: int = 970
    """Port of the diverted-DNS listeners on the loopback addresses (0: a free one)."""
    listen_port: int = 971
    """Port of the transparent listeners on the loopback addresses (0: a free one)."""
    mark: int = MARK
    check_interval: float = 5.0
    """Seconds between checks that the table is still whole (it is put back if not)."""


class Interception:
    """The table and its listeners; `start` and `stop` them once."""

    def __init__(
        self, settings: InterceptSettings, dns: DnsFrontEnd, transparent: TransparentFrontEnd
    ) -> None:
        self.settings = settings
        self.dns = dns
        self.transparent = transparent
        self.ruleset: nft.Ruleset | None = None
        self._dns: list[DnsServerHandle] = []
        self._servers: list[Listener] = []
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the listeners, then install the table; `NftError` or `OSError` if impossible."""
        cfg = self.settings
        dns_ports: dict[str, int] = {}
        tcp_ports: dict[str, int] = {}
        for host in LOOPBACKS:
            try:
                handle = await run_dns(self.dns, host, cfg.dns_port)
                self._dns.append(handle)
                server = await start_transparent(self.transparent, host, cfg.listen_port)
                self._servers.append(server)
            except OSError as exc:
                if host == LOOPBACKS[0]:
                    await self._close()
                    raise
                log.warning("intercept.no_ipv6_loopback", error=str(exc))
                break
            dns_ports[host] = handle.address[1]
            tcp_ports[host] = server.sockets[0].getsockname()[1]
        self.transparent.own_ports = frozenset({*dns_ports.values(), *tcp_ports.values()})
        self.ruleset = nft.Ruleset(
            dns_port_v4=dns_ports["127.0.0.1"],
            dns_port_v6=dns_ports.get("::1", 0),
            tcp_port_v4=tcp_ports["127.0.0.1"],
            tcp_port_v6=tcp_ports.get("::1", 0),
            ports=cfg.ports,
            allow_quic=cfg.allow_quic,
            allow_dot=cfg.allow_dot,
            fail_mode=cfg.fail_mode,
            mark=cfg.mark,
        )
        try:
            await asyncio.to_thread(nft.install, self.ruleset)
        except BaseException:
            await self._close()
            raise
        log.info(
            "intercept.installed",
            table=f"{nft.FAMILY} {nft.TABLE}",
            dns_ports=dns_ports,
            listen_ports=tcp_ports,
            ports=list(cfg.ports),
            allow_quic=cfg.allow_quic,
            allow_dot=cfg.allow_dot,
            fail_mode=cfg.fail_mode,
        )
        self._watch = asyncio.get_running_loop().create_task(self._keep(self.ruleset))

    async def _keep(self, ruleset: nft.Ruleset) -> None:
        """Put the table back whenever it was removed or emptied, and say so.

        Only root can touch it; this turns a casual ``nft flush ruleset`` (or another firewall
        manager reloading its own rules) into a logged gap of a few seconds instead of the end
        of enforcement.
        """
        expected = ruleset.render().count("redirect to :")
        while True:
            await asyncio.sleep(self.settings.check_interval)
            try:
                listing = await asyncio.to_thread(nft.installed)
                if listing is None or listing.count("redirect to :") != expected:
                    log.error("intercept.table_tampered", detail="the table was removed or changed")
                    # On the loop, not in a thread: `stop` cancels this task before removing
                    # the table, and a thread still installing then could outlive the removal.
                    nft.install(ruleset)
                    log.warning("intercept.reinstalled")
            except nft.NftError as exc:
                log.error("intercept.check_failed", error=str(exc))

    async def stop(self) -> None:
        """Stop watching the table, remove it, then close the listeners."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self.ruleset is not None:
            try:
                removed = await asyncio.to_thread(nft.remove)
                log.info("intercept.removed", removed=removed)
            except nft.NftError as exc:
                log.error("intercept.remove_failed", error=str(exc))
            self.ruleset = None
        await self._close()

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for handle in self._dns:
            handle.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await server.wait_closed()
        self._servers = []
        self._dns = []


class DnsEvents:
    """The DNS front end's event sink while intercepting.

    Names the process and user behind each query, found from the query's source address and
    port while the client still waits for its answer: a TCP query's socket exactly, by both its
    ends (the front end's ``tcp_clients`` gives the resolver it connected to), a UDP query's
    in ``/proc/net/udp``. A UDP query sent from the very address and port of an open TCP DNS
    connection would be taken for that connection's: the kernel keeps the two apart, a query's
    event does not.
    """

    __slots__ = ("finder", "sink", "tcp_clients")

    def __init__(self, finder: ProcessFinder, sink: EventSink) -> None:
        self.finder = finder
        self.sink = sink
        self.tcp_clients: dict[tuple[str, int], tuple[str, int]] = {}
        """The DNS front end's open TCP connections (`DnsFrontEnd.tcp_clients`)."""

    def __call__(self, event: NetworkEvent) -> None:
        if event.client_port:
            client = (event.client_ip, event.client_port)
            remote = self.tcp_clients.get(client)
            try:
                if remote is None:
                    owner = self.finder.lookup("udp", *client)
                else:
                    owner = self.finder.lookup("tcp", *client, remote)
            except (OSError, ValueError):
                owner = None
            if owner is not None:
                event = attribute(event, owner)
        self.sink(event)


class Wiring:
    """What the agent builds differently when it intercepts; with no settings, nothing.

    The shim's own sockets (its server session, DNS upstream queries, proxied connections)
    carry the mark; the DNS front end's events name their process and its upstream answers feed
    the transparent listener's address map; the `Interception` serves diverted traffic with the
    agent's DNS and proxy front ends.
    """

    def __init__(self, settings: InterceptSettings | None, server: str) -> None:
        self.settings = settings
        self.names = AddressNames()
        self.finder = ProcessFinder()
        self._dns_events: DnsEvents | None = None
        mark = settings.mark if settings is not None else 0
        self.mark = mark
        self.client: httpx.AsyncClient | None = None
        self.connect: Connector | None = None
        if mark:
            transport = httpx.AsyncHTTPTransport(
                socket_options=[(socket.SOL_SOCKET, socket.SO_MARK, mark)]
            )
            self.client = httpx.AsyncClient(base_url=server.rstrip("/"), transport=transport)
            self.connect = functools.partial(open_marked_connection, mark=mark)

    def dns(self, settings: DnsSettings) -> DnsSettings:
        """The DNS front end's settings, its upstream sockets marked."""
        return dataclasses.replace(settings, socket_mark=self.mark) if self.mark else settings

    def dns_events(self, sink: EventSink) -> EventSink:
        """The DNS front end's event sink."""
        if self.settings is None:
            return sink
        self._dns_events = DnsEvents(self.finder, sink)
        return self._dns_events

    def interception(self, dns: DnsFrontEnd, proxy: ProxyFrontEnd) -> Interception | None:
        """The table and listeners to start, serving with these front ends."""
        if self.settings is None:
            return None
        dns.on_answer = self.names.learn
        if self._dns_events is not None:
            self._dns_events.tcp_clients = dns.tcp_clients
        transparent = TransparentFrontEnd(
            proxy, names=self.names, finder=self.finder, mark=self.mark
        )
        return Interception(self.settings, dns, transparent)
