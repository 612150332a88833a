"""The shim's forward proxy: the listener and the flow of one client connection.

Browsers and apps on the endpoint use it as their HTTP(S) proxy. For plain HTTP it reads the
request head, decides on the request-target's host (and the Host header), and either answers with
a block or warning page or relays the request to the origin. For CONNECT it decides on the target
host, connects, and before forwarding a single client byte reads the TLS ClientHello's server name
(SNI) and decides on that too, so that a tunnel to an allowed front cannot reach a blocked app
(domain fronting). A tunnel that carries plain HTTP instead (``CONNECT 192.0.2.7:80``, then
``Host: blocked.example``) is followed request by request like proxied plain HTTP, each request
decided on the tunnel's target and its own Host. Nothing is decrypted.

HTTPS cannot carry a page without decrypting, so a denied HTTPS connection is refused (403 to the
CONNECT, or a TLS ``access_denied`` alert when only the SNI is denied) and the user is told through
a desktop notification. For `warn` indicators the notification points to the proxy's own warning
page, served by this same server over plain HTTP on loopback; its "Continue" button records a
per-user bypass, and the retried connection passes.

A plain-HTTP client connection stays open for the client's next request (HTTP/1.1
keep-alive), and every request on it is decided on its own names, with its own event: deciding
only the first would let a second request name any host served from the same address. A denied
request gets its page and ends the connection. Each allowed request goes to its origin on a
connection of its own (``Connection: close`` upstream), which keeps body framing simple and
correct; plain HTTP is rare next to CONNECT.

Every CONNECT tunnel and every plain-HTTP request becomes one `NetworkEvent` given to
``on_event``: at denial, or at its end with its byte counts (``bytes_up``: bytes sent to the
origin, ``bytes_down``: bytes sent back to the client). Its ``time`` is when it was decided.

With a `ParentProxy`, allowed traffic goes on through it (`open_tunnel`, `open_http`).

The pieces live next door: `enforcer.shim.proxy.http1` (framing), `enforcer.shim.proxy.relay`
(moving bytes), `enforcer.shim.proxy.tls` (SNI), `enforcer.shim.proxy.warn` (pages, notifications,
bypasses), `enforcer.shim.proxy.parent` (the parent proxy), `enforcer.shim.verdict` (verdict to
outcome, events). A transparent listener reuses them with `ProxyFrontEnd.for_user`, `decide`,
`rule_on_first_bytes`, `record`, `relay_request`, `open_tunnel` and `Relay`.

``https://`` absolute-form requests (TLS to the origin done by the proxy) are refused with 501:
clients use CONNECT for HTTPS.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import datetime as dt
import getpass
import logging
import secrets
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from urllib.parse import quote

from enforcer.decide.matcher import NOT_GOVERNED, Matcher, Verdict
from enforcer.models import Action, EventAction, normalize_host
from enforcer.shim import clients as client_filter
from enforcer.shim.clients import ClientFilter
from enforcer.shim.proxy import tls, warn
from enforcer.shim.proxy.bypass import BypassStore
from enforcer.shim.proxy.http1 import (
    HEAD_END,
    BadRequest,
    Exchange,
    RequestHead,
    Target,
    error_response,
    parse_absolute,
    parse_authority,
    parse_head,
    read_head,
    read_next_head,
    starts_request,
)
from enforcer.shim.proxy.notify import Notifier, notify
from enforcer.shim.proxy.parent import ParentProxy, ParentRefused
from enforcer.shim.proxy.relay import CHUNK, Relay, close_client, peer_ip, send_quietly
from enforcer.shim.report.process import ProcessFinder
from enforcer.shim.verdict import EventRecorder, EventSink, Ruling, event_action, stricter

log = logging.getLogger(__name__)

StreamPair = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Connector = Callable[[str, int], Awaitable[StreamPair]]
"""Opens the upstream TCP connection for (host, port); tests inject one that pins names."""

OwnerOf = Callable[[tuple[str, int], tuple[str, int]], str | None]
"""The OS user behind a client connection on this host, from (client address, proxy address);
None when it cannot be found (a client on another host, no process table to read)."""

SOURCE = "proxy"
_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True, slots=True)
class ProxyLimits:
    """Bounds that keep a slow or hostile client from holding resources."""

    max_head_bytes: int = 64 * 1024
    """Largest request (or response) head, request line and headers included."""
    max_headers: int = 100
    """Most header fields in one head."""
    head_timeout: float = 10.0
    """Seconds a client has to send a whole request head, or a whole ClientHello."""
    connect_timeout: float = 10.0
    """Seconds to open the upstream TCP connection."""
    idle_timeout: float = 600.0
    """Seconds without a byte in either direction after which a relay is closed."""
    keepalive_timeout: float = 30.0
    """Seconds a plain-HTTP client connection may wait between two requests."""
    max_form_bytes: int = 8 * 1024
    """Largest body of a POST to the proxy's own pages."""
    notify_interval: float = 30.0
    """Seconds during which repeated denials of the same app do not notify again (a page load
    opens many connections)."""
    token_lifetime: dt.timedelta = dt.timedelta(hours=1)
    """How long a warning page's "Continue" button stays valid (and can be used once)."""


@dataclass(slots=True)
class _Client:
    """The client of the explicit-proxy connection a task serves (see `ProxyFrontEnd.principal`)."""

    address: tuple[str, int]
    proxy: tuple[str, int]
    principal: str | None = None


_CLIENT: contextvars.ContextVar[_Client | None] = contextvars.ContextVar("client", default=None)
"""Set by `ProxyFrontEnd.handle` for its connection's task: a warning's bypass depends on who
asks, and only the warning paths need to know, so it is found there, once per connection."""


def _process_owner() -> OwnerOf | None:
    """The process table's answer on Linux (`ProcessFinder`), nothing elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    finder = ProcessFinder()

    def owner_of(client: tuple[str, int], proxy: tuple[str, int]) -> str | None:
        info = finder.lookup("tcp", client[0], client[1], proxy)
        return info.user if info is not None else None

    return owner_of


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ProxyFrontEnd:
    """Decides and relays the connections of one endpoint user; serve it with `start_proxy`.

    `matcher` is read through the attribute on every decision, so the caller may update it in
    place or assign a new one at any time. `connect` opens upstream connections (tests pin names
    to local servers with it). `notifier` shows desktop notifications (default: `notify`).
    `app_names` maps app ids to display names for pages and notifications (default: the ids).
    `on_event` runs on the event loop, once per connection (once per request on plain HTTP):
    it must not block. `parent`: a proxy that allowed traffic is relayed through. `owner_of`
    finds the OS user of a client on this host, whose bypasses a warning decides on (default:
    the process table on Linux); without one, the client's address stands for the user.
    """

    def __init__(
        self,
        matcher: Matcher,
        *,
        bypasses: BypassStore,
        on_event: EventSink | None = None,
        notifier: Notifier | None = None,
        user: str | None = None,
        limits: ProxyLimits | None = None,
        connect: Connector | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
        app_names: Mapping[str, str] | None = None,
        parent: ParentProxy | None = None,
        owner_of: OwnerOf | None = None,
    ) -> None:
        self.matcher = matcher
        self.parent = parent
        """Allowed traffic goes on through this proxy (None: straight to the origin)."""
        self.bypasses = bypasses
        self.notifier = notifier if notifier is not None else notify
        self.user = user if user is not None else getpass.getuser()
        self.events = EventRecorder(SOURCE, on_event, self.user) if on_event is not None else None
        self.limits = limits or ProxyLimits()
        self.connect = connect or self._open_connection
        self.clock = clock
        self.app_names = app_names if app_names is not None else {}
        self.secret = secrets.token_bytes(32)
        """Signs the warning pages' "Continue" tokens."""
        self.notified: dict[tuple[EventAction, str], float] = {}
        """When each (outcome, app) was last notified (event-loop time)."""
        self.spent: dict[str, float] = {}
        """"Continue" tokens already used, with their expiry (POSIX time): each works once."""
        self.owner_of = owner_of if owner_of is not None else _process_owner()
        self._principal: str | None = None
        self.clients: ClientFilter | None = None
        """The clients served (`start_proxy` sets it for a listener beyond loopback)."""
        self.pages_host = "127.0.0.1"
        self.pages_port = 0

    def for_user(self, user: str, on_event: EventSink | None) -> ProxyFrontEnd:
        """This front end deciding for another OS user and recording to another sink.

        The copy shares the matcher, bypasses, token secret and notification times, so a warning
        page rendered by one view is accepted by another and a bypass is the user's own.
        """
        view = copy.copy(self)
        view.user = user
        view._principal = user
        view.events = EventRecorder(SOURCE, on_event, user) if on_event is not None else None
        return view

    @property
    def principal(self) -> str:
        """Whom a warning's bypass (and a "Continue" token) belongs to.

        A view `for_user` decides for its user. On an explicit-proxy connection: the OS user
        behind the client when the shim can find it (a client on this host), else the client's
        address, so that one person's "Continue" is not everyone's. Elsewhere: `user`.
        """
        if self._principal is not None:
            return self._principal
        client = _CLIENT.get()
        if client is None:
            return self.user
        if client.principal is None:
            user = None
            if self.owner_of is not None:
                try:
                    user = self.owner_of(client.address, client.proxy)
                except OSError as exc:
                    log.info("cannot find the user of %s: %s", client.address[0], exc)
            client.principal = user or client.address[0]
        return client.principal

    # -- addresses of the proxy's own pages

    def listening_on(self, host: str, port: int) -> None:
        """Tell the front end its listening address, used in the links to its own pages."""
        wildcard = host in ("0.0.0.0", "::", "")
        self.pages_host = "127.0.0.1" if wildcard else host
        self.pages_port = port

    @property
    def pages_url(self) -> str:
        """Base URL of the proxy's own pages, e.g. ``http://127.0.0.1:3128``."""
        host = f"[{self.pages_host}]" if ":" in self.pages_host else self.pages_host
        return f"http://{host}:{self.pages_port}"

    def warn_url(self, host: str) -> str:
        """The loopback warning page for a warn-governed host."""
        return f"{self.pages_url}/warn?host={quote(host, safe='')}"

    def is_self(self, target: Target) -> bool:
        """Whether a request goes to this proxy's own pages."""
        names = _LOOPBACK_NAMES | {self.pages_host}
        return target.port == self.pages_port and target.host in names

    async def _open_connection(self, host: str, port: int) -> StreamPair:
        return await asyncio.open_connection(host, port, limit=self.limits.max_head_bytes)

    # -- decisions and events

    def app_label(self, ruling: Ruling) -> str:
        """The app's name as users know it ("Dropbox"), for pages and notifications."""
        verdict = ruling.verdict
        return self.app_names.get(verdict.app_id) or warn.app_key(verdict) or ruling.name

    def decide(self, names: Iterable[str]) -> Ruling:
        """The most restrictive outcome over the names a connection carries (host, SNI).

        Each name is normalised as far as it can be (`normalize_host`: ``www..mega.nz`` is
        decided as ``www.mega.nz``); a name that cannot name a host is denied, as an unreadable
        ClientHello is, so no spelling of a blocked name passes as "not governed".
        """
        best: Ruling | None = None
        for name in names:
            host = normalize_host(name)
            if host is None:
                log.info("denying a connection to %r: not a host name", name)
                return Ruling(EventAction.BLOCKED, name, NOT_GOVERNED)
            verdict = self.matcher.verdict_normalized(host)
            action = self._outcome(verdict)
            if best is None or stricter(action, best.action):
                best = Ruling(action, host, verdict)
        if best is None:
            raise ValueError("decide() needs at least one name")
        return best

    def _outcome(self, verdict: Verdict) -> EventAction:
        action = event_action(verdict)
        if action is EventAction.WARNED and self.bypasses.is_bypassed(
            self.principal, warn.app_key(verdict), self.clock()
        ):
            return EventAction.BYPASSED
        return action

    def rule_on_first_bytes(self, ruling: Ruling, host: str, first: tls.FirstBytes) -> Ruling:
        """Combine the ruling on a connection's `host` with the ClientHello it starts with."""
        if first.error:
            # A real TLS server would refuse it too; refusing means no parser gap can be used
            # to slip a blocked name past the check.
            log.info("denying a connection to %s: unreadable ClientHello (%s)", host, first.error)
            return Ruling(EventAction.BLOCKED, host, NOT_GOVERNED)
        name = first.server_name
        if name is None or name == host:
            return ruling
        sni = self.decide([name])
        return sni if stricter(sni.action, ruling.action) else ruling

    def record(
        self,
        ruling: Ruling,
        when: dt.datetime,
        client_ip: str,
        *,
        port: int,
        dest_ip: str = "",
        up: int = 0,
        down: int = 0,
    ) -> None:
        """Record the connection's event (if there is a sink)."""
        if self.events is not None:
            self.events.record(
                ruling.name,
                ruling.action,
                ruling.verdict,
                when=when,
                client_ip=client_ip,
                dest_ip=dest_ip,
                dest_port=port,
                bytes_up=up,
                bytes_down=down,
            )

    # -- connection handling

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection (the `asyncio.start_server` callback); never raises."""
        peer = writer.get_extra_info("peername")
        client_ip = peer[0] if isinstance(peer, tuple) else ""
        if self.clients is not None and not self.clients.allows(client_ip):
            # Before reading a byte: a client outside the allowed networks learns nothing else.
            await send_quietly(writer, error_response(403, "this proxy does not serve you"))
            await close_client(reader, writer)
            return
        local = writer.get_extra_info("sockname")
        if isinstance(peer, tuple) and isinstance(local, tuple):
            _CLIENT.set(_Client((peer[0], peer[1]), (local[0], local[1])))
        try:
            await self._serve(reader, writer, client_ip)
        except BadRequest as exc:
            await send_quietly(writer, error_response(exc.status, exc.detail))
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except Exception:
            log.exception("proxy connection from %s failed", client_ip)
        except asyncio.CancelledError:
            # Shutdown cancels the connections in flight. This task is the top of its own
            # stack (nobody awaits it), and Python 3.11's stream callback reports a cancelled
            # handler as an "unhandled exception", so it ends quietly instead.
            writer.transport.abort()
            return
        finally:
            await close_client(reader, writer)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client_ip: str
    ) -> None:
        limits = self.limits
        try:
            async with asyncio.timeout(limits.head_timeout):
                data = await read_head(reader)
        except TimeoutError:
            raise BadRequest(408, "request head not received in time") from None
        # A kept-alive connection carries one request after another, each decided on its own
        # names: deciding only the first would let the next ones reach any host behind the
        # same address.
        while data is not None:
            end = data.index(HEAD_END) + len(HEAD_END)
            head = parse_head(data[:end], limits.max_headers)
            body = data[end:]
            if head.method == "CONNECT":
                if body:  # a tunnel's first bytes must wait for its answer
                    raise BadRequest(400, "bytes sent before the answer to a CONNECT")
                await self._tunnel(head, reader, writer, client_ip)
                return
            if head.target.startswith("/"):
                host = self._host_header(head)
                await warn.serve_local(self, head, reader, writer, host, body)
                return
            target = parse_absolute(head.target)
            if self.is_self(target):
                local = replace(head, target=target.path)
                await warn.serve_local(self, local, reader, writer, target, body)
                return
            leftover = await self._forward(data, head, target, reader, writer, client_ip)
            if leftover is None:
                return
            data = await read_next_head(
                reader,
                leftover,
                max_bytes=limits.max_head_bytes,
                idle=limits.keepalive_timeout,
                timeout=limits.head_timeout,
            )

    def _host_header(self, head: RequestHead) -> Target | None:
        value = head.header("host")
        if value is None:
            if head.version == "HTTP/1.1":
                raise BadRequest(400, "missing Host header")
            return None
        return parse_authority(value, 80)

    async def open_tunnel(self, target: Target, connect: Connector | None = None) -> StreamPair:
        """A connection that carries bytes to `target`: straight, or a CONNECT tunnel through
        the parent proxy. `connect` opens TCP connections (default: the front end's own)."""
        if self.parent is not None:
            parent = self.parent
            return await self._open(
                f"the parent proxy {parent.authority}",
                lambda: parent.tunnel(connect or self.connect, target),
            )
        opener = connect or self.connect
        return await self._open(target.authority, lambda: opener(target.host, target.port))

    async def open_http(self, target: Target) -> StreamPair:
        """The connection a plain-HTTP request for `target` is sent on: the origin's, or the
        parent proxy's (the request then names its target in absolute form)."""
        if self.parent is not None:
            parent = self.parent
            return await self._open(
                f"the parent proxy {parent.authority}", lambda: self.connect(*parent.address)
            )
        return await self._open(target.authority, lambda: self.connect(target.host, target.port))

    async def _open(self, what: str, opener: Callable[[], Awaitable[StreamPair]]) -> StreamPair:
        try:
            async with asyncio.timeout(self.limits.connect_timeout):
                return await opener()
        except ParentRefused as exc:
            log.warning("%s", exc.detail)
            raise
        except TimeoutError:
            raise BadRequest(504, f"connecting to {what} timed out") from None
        except OSError as exc:
            raise BadRequest(502, f"cannot connect to {what}: {exc.strerror or exc}") from None

    # -- plain HTTP

    async def _forward(
        self,
        data: bytes,
        head: RequestHead,
        target: Target,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client_ip: str,
    ) -> bytes | None:
        """Decide one plain-HTTP request and relay it if allowed; the bytes of the next request
        when the connection carries on (see `relay_request`)."""
        host_header = self._host_header(head)
        names = [target.host]
        if host_header is not None and host_header.host != target.host:
            names.append(host_header.host)
        ruling = self.decide(names)
        when = self.clock()
        if ruling.verdict.action is Action.WARN and target.path == warn.INBAND_CONTINUE:
            if head.method != "POST":
                raise BadRequest(405, "method not allowed")
            form = await warn.read_form(self, head, reader, data[data.index(HEAD_END) + 4 :])
            writer.write(warn.continue_response(self, form, writer))
            await writer.drain()
            return None
        if ruling.denied:
            self.record(ruling, when, client_ip, port=target.port)
            writer.write(warn.denied_page(self, ruling, target))
            await writer.drain()
            return None
        via_parent = self.parent is not None
        exchange = Exchange(
            data, self.limits.max_head_bytes, self.limits.max_headers, via_parent=via_parent
        )
        extra = self.parent.headers() if self.parent is not None else ()
        request = exchange.request_head(target, absolute=via_parent, extra=extra)
        return await self.relay_request(
            exchange,
            request,
            lambda: self.open_http(target),
            reader,
            writer,
            ruling,
            when,
            client_ip,
            port=target.port,
        )

    async def relay_request(
        self,
        exchange: Exchange,
        request: bytes,
        open_upstream: Callable[[], Awaitable[StreamPair]],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ruling: Ruling,
        when: dt.datetime,
        client_ip: str,
        *,
        port: int,
        dest_ip: str = "",
    ) -> bytes | None:
        """Relay one allowed plain-HTTP request (`request`: its head for the origin) and the
        response on a connection from `open_upstream`, and record its event.

        Returns the bytes already read of the client's next request when the connection
        carries on, None when it ends. `BadRequest` when nothing was answered yet.
        """
        try:
            up_reader, up_writer = await open_upstream()
        except BadRequest:
            self.record(ruling, when, client_ip, port=port, dest_ip=dest_ip)
            raise
        dest_ip = dest_ip or peer_ip(up_writer)
        up_writer.write(request)

        async def send_body() -> None:
            try:
                await exchange.send_body(reader, up_writer)
            except BaseException:
                up_writer.transport.abort()  # wakes the response side instead of waiting
                raise

        # The origin may answer before the body is complete (100-continue, early errors):
        # both directions run at once.
        sender = asyncio.create_task(send_body())
        try:
            async with asyncio.timeout(self.limits.idle_timeout):
                await exchange.relay_response(up_reader, writer)
        except (BadRequest, TimeoutError) as exc:
            if exchange.down.n:
                return None  # part of the response is out: an error status would corrupt it
            if isinstance(exc, TimeoutError):
                raise BadRequest(504, "the origin did not answer in time") from None
            raise
        finally:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender
            up_writer.close()
            self.record(
                ruling,
                when,
                client_ip,
                port=port,
                dest_ip=dest_ip,
                up=exchange.up.n,
                down=exchange.down.n,
            )
        return exchange.leftover if exchange.keep_alive else None

    # -- CONNECT

    async def _tunnel(
        self,
        head: RequestHead,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client_ip: str,
    ) -> None:
        target = parse_authority(head.target)
        ruling = self.decide([target.host])
        when = self.clock()
        if ruling.denied:
            writer.write(warn.denied_text(self, ruling))
            warn.notify_denied(self, ruling)
            self.record(ruling, when, client_ip, port=target.port)
            await writer.drain()
            return
        # Connect before answering 200 so that an unreachable origin becomes a 502 the client
        # can report, and server-speaks-first protocols work. No client byte is forwarded
        # before the SNI check below.
        try:
            up_reader, up_writer = await self.open_tunnel(target)
        except BadRequest:
            self.record(ruling, when, client_ip, port=target.port)
            raise
        dest_ip = peer_ip(up_writer)
        writer.write(_ESTABLISHED)
        relay = Relay(reader, writer, up_reader, up_writer, self.limits.idle_timeout)
        http: bytes | None = None
        try:
            # The origin-to-client direction runs meanwhile, for protocols where the server
            # speaks first.
            relay.start_down()
            limits = self.limits
            first = await tls.read_first_bytes(reader, limits.idle_timeout, limits.head_timeout)
            if first.tls:
                ruling = self.rule_on_first_bytes(ruling, target.host, first)
                if ruling.denied:
                    writer.write(tls.ACCESS_DENIED)
                    warn.notify_denied(self, ruling)
                    return
            elif first.data:
                http = await self._http_start(reader, first.data)
            if http is None:
                await relay.carry(first.data)
        finally:
            relay.close()
            if http is None:
                self.record(
                    ruling,
                    when,
                    client_ip,
                    port=target.port,
                    dest_ip=dest_ip,
                    up=relay.up.n,
                    down=relay.down.n,
                )
        if http is not None:  # followed request by request, each with its own event
            await self._tunneled_http(target, http, reader, writer, client_ip)

    async def _http_start(self, reader: asyncio.StreamReader, data: bytes) -> bytes | None:
        """The tunnel's first bytes, read on to a whole request line, if it carries plain HTTP;
        None if it carries another protocol. `BadRequest` for a request that cannot be told
        from another protocol in time, or is too long to be one (it is denied, not relayed)."""
        limits = self.limits
        try:
            async with asyncio.timeout(limits.head_timeout):
                while (http := starts_request(data)) is None:
                    if len(data) > limits.max_head_bytes:
                        raise BadRequest(431, "request line too long")
                    more = await reader.read(CHUNK)
                    if not more:
                        return None  # no line, no name: decided on the CONNECT target alone
                    data += more
        except TimeoutError:
            raise BadRequest(408, "request line not received in time") from None
        return data if http else None

    async def _tunneled_http(
        self,
        target: Target,
        data: bytes | None,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client_ip: str,
    ) -> None:
        """Plain HTTP inside a CONNECT tunnel (``CONNECT 192.0.2.7:80`` and then ``Host:
        blocked.example``): each request is decided on the tunnel's target and its own names,
        as a proxied request is, and goes to the target on an upstream connection of its own."""
        limits = self.limits
        while True:
            data = await read_next_head(
                reader,
                data or b"",
                limits.max_head_bytes,
                limits.keepalive_timeout,
                limits.head_timeout,
            )
            if data is None:
                return
            end = data.index(HEAD_END) + len(HEAD_END)
            head = parse_head(data[:end], limits.max_headers)
            names = [*self._request_names(head), target.host]  # ties: the Host names it
            ruling = self.decide(names)
            when = self.clock()
            path = head.target if head.target.startswith("/") else "/"
            if (
                ruling.verdict.action is Action.WARN
                and path == warn.INBAND_CONTINUE
                and head.method == "POST"
            ):
                form = await warn.read_form(self, head, reader, data[end:])
                writer.write(warn.continue_response(self, form, writer))
                await writer.drain()
                return
            if ruling.denied:
                self.record(ruling, when, client_ip, port=target.port)
                page = Target(ruling.name, target.port, path)
                writer.write(warn.denied_page(self, ruling, page))
                await writer.drain()
                return
            if head.method == "CONNECT" or head.header("upgrade") is not None:
                # The connection leaves HTTP after this request: relayed as it is.
                await self._carry(target, data, ruling, when, reader, writer, client_ip)
                return
            exchange = Exchange(data, limits.max_head_bytes, limits.max_headers)
            data = await self.relay_request(
                exchange,
                exchange.request_head(None),
                lambda: self.open_tunnel(target),
                reader,
                writer,
                ruling,
                when,
                client_ip,
                port=target.port,
            )
            if data is None:
                return

    def _request_names(self, head: RequestHead) -> list[str]:
        """The hosts a request names besides its connection's: its Host header, and the
        target of a request meant for a proxy (absolute form, CONNECT), which a proxy behind
        the tunnel would go to."""
        names = []
        host = self._host_header(head)
        if host is not None:
            names.append(host.host)
        if head.method == "CONNECT":
            names.append(parse_authority(head.target).host)
        elif not head.target.startswith("/") and head.target != "*":
            names.append(parse_absolute(head.target).host)
        return names

    async def _carry(
        self,
        target: Target,
        data: bytes,
        ruling: Ruling,
        when: dt.datetime,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client_ip: str,
    ) -> None:
        """Relay the rest of a tunnel byte for byte, starting with `data`, and record it."""
        try:
            up_reader, up_writer = await self.open_tunnel(target)
        except BadRequest:
            self.record(ruling, when, client_ip, port=target.port)
            raise
        relay = Relay(reader, writer, up_reader, up_writer, self.limits.idle_timeout)
        try:
            await relay.carry(data)
        finally:
            relay.close()
            self.record(
                ruling,
                when,
                client_ip,
                port=target.port,
                dest_ip=peer_ip(up_writer),
                up=relay.up.n,
                down=relay.down.n,
            )


async def start_proxy(
    frontend: ProxyFrontEnd,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    allow_clients: Sequence[str] | None = None,
) -> asyncio.Server:
    """Listen on (host, port) and serve `frontend`; port 0 picks a free port.

    On an address beyond loopback only loopback and `allow_clients` are served (None: the
    private networks; see `enforcer.shim.clients`); ValueError if one is not a network. The
    caller stops it with ``server.close()`` and ``await server.wait_closed()``; the bound port
    is ``frontend.pages_port``.
    """
    client_filter.parse_networks(allow_clients or ())  # a bad item fails before listening
    server = await asyncio.start_server(
        frontend.handle, host, port, limit=frontend.limits.max_head_bytes
    )
    bound = server.sockets[0].getsockname()
    frontend.clients = client_filter.for_listener("proxy", host, int(bound[1]), allow_clients)
    frontend.listening_on(str(bound[0]), int(bound[1]))
    log.info(
        "proxy listening on %s for user %s: %d indicators, bypasses for %s (%s), parent %s, "
        "limits %s",
        frontend.pages_url,
        frontend.user,
        len(frontend.matcher),
        frontend.bypasses.ttl,
        frontend.bypasses.path or "in memory",
        frontend.parent.authority if frontend.parent else "none",
        frontend.limits,
    )
    return server
