"""The transparent listener: TCP connections diverted by nftables, decided like proxied ones.

A process that ignores every proxy setting still connects to port 80 or 443 somewhere; the
``divert`` chain sends that connection here instead. For each one:

1. the original destination comes from connection tracking (`origdst`);
2. the client's first bytes give the names: the TLS ClientHello's server name (SNI), or the
   plain HTTP request's Host header and, for a request meant for a proxy (CONNECT, an absolute
   URL), its target. A connection that carries none (a bare IP, a protocol other than TLS or
   HTTP) is decided by the name the shim's DNS front end last answered with that address
   (`AddressNames`); without one it is relayed and recorded under its address. First bytes
   that start like TLS or HTTP but cannot be read are denied;
3. the name is decided by the proxy front end's rules (`ProxyFrontEnd.decide`); a warned name
   for the OS user of the process that opened the connection, found from the client socket
   (`enforcer.shim.report.process`), so a warning's "Continue" is that user's bypass and no
   one else's. Denied:
   plain HTTP gets the proxy's block or warning page, TLS a TLS ``access_denied`` alert and a
   desktop notification, anything else a closed connection;
4. allowed: the bytes already read and the rest of the connection are relayed byte for byte to
   the original destination, from a socket carrying the shim's mark so it is not diverted again.

Plain HTTP is followed request by request (framed by the proxy's `Exchange`): each request
on a kept-alive connection is decided on its own names and gets its own event, since the next
request to a shared address can name another host. A request that leaves HTTP (CONNECT to a
proxy elsewhere, an ``Upgrade`` such as WebSocket) turns the connection into a tunnel after
its decision. With a parent proxy (``--parent-proxy``), allowed connections go through it:
tunnels as ``CONNECT name:port``, plain HTTP as absolute-form requests.

Every connection (every plain-HTTP request) is one `NetworkEvent` (source "proxy") with the
process and user, given at denial or at the end of the relay with its byte counts. Finding the
process costs more than the rest of a connection's set-up (a scan of process descriptors), so
an allowed connection's owner is looked up on the event loop's next turn, once its first bytes
are on their way, together with the other connections' of that turn (`Attribution`); a denied
or warned one's at once.

Limits, on purpose: a ClientHello decides its whole TLS connection, like a CONNECT tunnel:
HTTP/2 coalescing that follows rides on it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import logging
import socket
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from enforcer.decide.matcher import NOT_GOVERNED
from enforcer.models import Action, EventAction, NetworkEvent
from enforcer.shim.intercept.mark import open_marked_connection, set_mark
from enforcer.shim.intercept.origdst import original_destination
from enforcer.shim.intercept.pipe import Flow, Pipe, Pipes
from enforcer.shim.proxy import tls, warn
from enforcer.shim.proxy.frontend import ProxyFrontEnd, ProxyLimits
from enforcer.shim.proxy.http1 import (
    BadRequest,
    Exchange,
    Target,
    error_response,
    parse_absolute,
    parse_authority,
    parse_head,
    read_next_head,
)
from enforcer.shim.proxy.relay import Relay, close_client, peer_ip, send_quietly
from enforcer.shim.proxy.warn import INBAND_CONTINUE
from enforcer.shim.report.process import (
    Attribution,
    Owner,
    ProcessFinder,
    ProcessInfo,
    attribute,
)
from enforcer.shim.verdict import Ruling

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_HEAD_END = b"\r\n\r\n"
_STREAM_LIMIT = 1 << 20
"""Bytes a relayed stream buffers before it stops reading: a large window keeps the relay's
wake-ups few on bulk transfers (a request head is bounded separately, by the proxy limits)."""
_BACKLOG = 1024
_ACCEPT_BATCH = 64
"""Connections accepted per wake-up of the listener."""
_SWEEP_SECONDS = 1.0
"""How often the time limits of first bytes, connects and idle pipes are checked."""
_EPOCH = dt.datetime.fromtimestamp(0, dt.UTC)
_NO_OWNER = ProcessInfo(0, "", "", -1, "")
"""Where a connection's owner is not known: the event keeps the front end's user."""
_NAMES = 65_536
"""Addresses remembered with the name they were answered for."""
_HTTP_METHODS = (b"GET ", b"POST", b"HEAD", b"PUT ", b"DELE", b"OPTI", b"PATC", b"CONN", b"TRAC")


class AddressNames:
    """The name the DNS front end last answered with each address (bounded, oldest dropped).

    Fed with the DNS front end's upstream answers (`learn`, its ``on_answer``), read by the
    transparent listener for connections that carry no name of their own.
    """

    def __init__(self, size: int = _NAMES) -> None:
        self.size = size
        self._names: OrderedDict[str, str] = OrderedDict()

    def learn(self, name: str, address: str) -> None:
        """Remember that the shim answered `name` with `address`."""
        names = self._names
        names[address] = name
        names.move_to_end(address)
        if len(names) > self.size:
            names.popitem(last=False)

    def get(self, address: str) -> str | None:
        """The name answered last with `address`, if the shim answered it."""
        return self._names.get(address)


class _First(NamedTuple):
    """What the client sent first and the names found in it."""

    data: bytes
    names: tuple[str, ...] = ()
    kind: str = ""
    """"tls", "http" or "" (neither)."""
    error: str = ""
    """Why bytes that start like TLS or HTTP cannot be read."""
    path: str = "/"
    method: str = ""
    tunnel: bool = False
    """An HTTP request after which the connection is no longer HTTP (CONNECT, Upgrade)."""


async def _read_first(reader: asyncio.StreamReader, limits: ProxyLimits) -> _First:
    """The client's first bytes, up to a whole ClientHello or HTTP request head; each within
    the head timeout."""
    timeout = limits.head_timeout
    first = await tls.read_first_bytes(reader, timeout, timeout)
    data = first.data
    if first.tls:
        sni = (first.server_name,) if first.server_name else ()
        return _First(data, sni, "tls", first.error)
    if data[:4] in _HTTP_METHODS:
        async with asyncio.timeout(timeout):
            while _HEAD_END not in data:
                more = await reader.read(_CHUNK)
                if not more or len(data) > limits.max_head_bytes:
                    return _First(data, (), "http", "incomplete request head")
                data += more
        return _http_first(data)
    return _First(data)


def _http_first(data: bytes) -> _First:
    """The names and kind of an HTTP request whose whole head is in `data`."""
    try:
        head = parse_head(data[: data.index(_HEAD_END) + 4])
        host = head.header("host")
        names = [parse_authority(host, 80).host] if host else []
        # A request to a proxy elsewhere (CONNECT, or an absolute URL) names its real
        # target in the request line: decided on that too, or any open proxy on port 80
        # would carry a blocked app past the check.
        if head.method == "CONNECT":
            names.append(parse_authority(head.target).host)
        elif not head.target.startswith("/") and head.target != "*":
            names.append(parse_absolute(head.target).host)
    except BadRequest as exc:
        return _First(data, (), "http", exc.detail)
    path = head.target if head.target.startswith("/") else "/"
    tunnel = head.method == "CONNECT" or head.header("upgrade") is not None
    return _First(data, tuple(names), "http", path=path, method=head.method, tunnel=tunnel)


class TransparentFrontEnd:
    """Serves diverted connections with the decisions, pages and events of `proxy`."""

    def __init__(
        self,
        proxy: ProxyFrontEnd,
        *,
        names: AddressNames | None = None,
        finder: ProcessFinder | None = None,
        mark: int = 0,
        own_ports: frozenset[int] = frozenset(),
    ) -> None:
        self.proxy = proxy
        self.names = names or AddressNames()
        self.attribution = Attribution(finder) if finder is not None else None
        self.mark = mark
        self.own_ports = own_ports
        """Ports of the shim's own listeners: a connection diverted to one of them would loop."""

    def owner(self, writer: asyncio.StreamWriter, destination: tuple[str, int]) -> Owner | None:
        """The process and user behind a client connection, not looked up yet."""
        peer = writer.get_extra_info("peername")
        if self.attribution is None or not isinstance(peer, tuple):
            return None
        return self.attribution.owner("tcp", peer[0], peer[1], destination)

    def _view(self, owner: Owner | None, *, as_user: bool = False) -> ProxyFrontEnd:
        """The proxy front end as seen for one connection: its events name its owner (looked up
        by the time one is recorded); with `as_user` it decides for the owner's OS user (looked
        up now), as a warning's bypass is that user's own."""
        if owner is None:
            return self.proxy
        events = self.proxy.events
        sink = _Attribute(events.sink, owner) if events is not None else None
        info = owner.info if as_user else None
        return self.proxy.for_user(info.user if info is not None else self.proxy.user, sink)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one diverted connection (the `asyncio.start_server` callback); never raises."""
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, BadRequest):
            pass
        except Exception:
            log.exception("diverted connection failed")
        except asyncio.CancelledError:
            writer.transport.abort()
            return
        finally:
            await close_client(reader, writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            dest_ip, dest_port = original_destination(sock)
        except OSError:
            return  # not diverted: someone connected to the listener itself
        if dest_port in self.own_ports and _is_loopback(dest_ip):
            return
        owner = self.owner(writer, (dest_ip, dest_port))
        view = self._view(owner)
        as_user = False
        client_ip = peer_ip(writer)
        limits = view.limits
        first = await _read_first(reader, limits)
        while True:
            when = view.clock()
            decision = self._decide(view, first, dest_ip)
            if decision.verdict.action is Action.WARN and not as_user:
                # Only a warning depends on who asks (the user's own "Continue").
                view, as_user = self._view(owner, as_user=True), True
                decision = self._decide(view, first, dest_ip)
            if (
                first.kind == "http"
                and first.path == INBAND_CONTINUE
                and first.method == "POST"
                and decision.verdict.action is Action.WARN
            ):
                await self._continue(view, first, reader, writer)
                return
            if decision.denied:
                if owner is not None:
                    owner.info  # noqa: B018 (looked up before the answer lets the client go)
                self._deny(view, decision, first, dest_port, writer)
                view.record(decision, when, client_ip, port=dest_port, dest_ip=dest_ip)
                await writer.drain()
                return
            if first.kind != "http" or first.tunnel:
                break
            self._attribute_soon(owner)
            following = await self._request(
                view, first, decision, when, (dest_ip, dest_port), reader, writer
            )
            if following is None:
                return
            first = _http_first(following)
        dest = (dest_ip, dest_port)
        up = await self._open(view, decision, dest, client_ip, when)
        if up is None:
            return
        relay = Relay(reader, writer, *up, limits.idle_timeout)
        try:
            self._attribute_soon(owner)  # after the first bytes are on their way
            await relay.carry(first.data)
        finally:
            relay.close()
            view.record(
                decision,
                when,
                client_ip,
                port=dest_port,
                dest_ip=dest_ip,
                up=relay.up.n,
                down=relay.down.n,
            )

    async def _open(
        self,
        view: ProxyFrontEnd,
        decision: Ruling,
        dest: tuple[str, int],
        client_ip: str,
        when: dt.datetime,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The connection an allowed tunnel goes on (None, recorded, if there is none)."""
        dest_ip, dest_port = dest
        try:
            if view.parent is not None:
                return await view.open_tunnel(Target(decision.name, dest_port))
            async with asyncio.timeout(view.limits.connect_timeout):
                return await open_marked_connection(
                    dest_ip, dest_port, self.mark, limit=_STREAM_LIMIT
                )
        except (OSError, TimeoutError, BadRequest):
            view.record(decision, when, client_ip, port=dest_port, dest_ip=dest_ip)
            return None

    async def _request(
        self,
        view: ProxyFrontEnd,
        first: _First,
        decision: Ruling,
        when: dt.datetime,
        dest: tuple[str, int],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bytes | None:
        """Relay one allowed plain-HTTP request; the next request's head (and what follows
        it), or None when the connection ends."""
        dest_ip, dest_port = dest
        limits = view.limits
        parent = view.parent
        try:
            exchange = Exchange(
                first.data, limits.max_head_bytes, limits.max_headers, via_parent=bool(parent)
            )
            if parent is None:
                request = exchange.request_head(None)

                async def direct() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
                    try:
                        async with asyncio.timeout(limits.connect_timeout):
                            return await open_marked_connection(
                                dest_ip, dest_port, self.mark, limit=_STREAM_LIMIT
                            )
                    except (OSError, TimeoutError) as exc:
                        raise BadRequest(502, f"cannot connect to {dest_ip}: {exc}") from None

                opener = direct
            else:
                target = Target(decision.name, dest_port, first.path)
                request = exchange.request_head(target, absolute=True, extra=parent.headers())

                async def opener() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
                    return await view.open_http(target)

            leftover = await view.relay_request(
                exchange,
                request,
                opener,
                reader,
                writer,
                decision,
                when,
                peer_ip(writer),
                port=dest_port,
                dest_ip=dest_ip,
            )
            if leftover is None:
                return None
            return await read_next_head(
                reader, leftover, limits.max_head_bytes, limits.keepalive_timeout,
                limits.head_timeout,
            )  # fmt: skip
        except BadRequest as exc:
            await send_quietly(writer, error_response(exc.status, exc.detail))
            return None

    def _attribute_soon(self, owner: Owner | None) -> None:
        """Find the owner of an allowed connection on the loop's next turn, off its path: the
        client waits for the origin's answer meanwhile, so its socket is still there."""
        if owner is not None and self.attribution is not None:
            self.attribution.soon(owner)

    def _decide(self, view: ProxyFrontEnd, first: _First, dest_ip: str) -> Ruling:
        if first.error:
            # What a real server would refuse too: refusing leaves no parser gap to slip
            # a blocked name through.
            return Ruling(EventAction.BLOCKED, dest_ip, NOT_GOVERNED)
        if first.names:
            return view.decide(first.names)
        name = self.names.get(dest_ip)
        if name is None:
            return Ruling(EventAction.ALLOWED, dest_ip, NOT_GOVERNED)
        return view.decide([name])

    def _deny(
        self,
        view: ProxyFrontEnd,
        decision: Ruling,
        first: _First,
        port: int,
        writer: asyncio.StreamWriter,
    ) -> None:
        if first.kind == "http" and not first.error:
            writer.write(warn.denied_page(view, decision, Target(decision.name, port, first.path)))
            return
        if first.kind == "tls":
            writer.write(tls.ACCESS_DENIED)
        warn.notify_denied(view, decision)

    async def _continue(
        self,
        view: ProxyFrontEnd,
        first: _First,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """The warning page's in-band "Continue" form, posted to the warned site itself."""
        head_end = first.data.index(_HEAD_END) + 4
        head = parse_head(first.data[:head_end])
        body = first.data[head_end:]
        feed = asyncio.StreamReader()
        feed.feed_data(body)
        length = int(head.header("content-length") or 0)
        if len(body) < length:
            feed.feed_data(await reader.readexactly(length - len(body)))
        feed.feed_eof()
        form = await warn.read_form(view, head, feed)
        writer.write(warn.continue_response(view, form, writer))
        await writer.drain()


class _Head:
    """A diverted connection until its first bytes are whole and decided, then until its
    origin answers the connect (an allowed one)."""

    __slots__ = (
        "buffer", "decision", "dest", "ended", "fd", "flow", "listener", "origin", "owner",
        "peer", "reading", "sock", "started", "when",
    )  # fmt: skip

    def __init__(
        self,
        listener: Listener,
        sock: socket.socket,
        peer: tuple[str, int],
        dest: tuple[str, int],
        now: float,
    ) -> None:
        self.listener = listener
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.dest = dest
        self.started = now
        self.buffer = b""
        self.origin: socket.socket | None = None
        """The marked socket to the original destination, once the connection is allowed."""
        self.decision: Ruling | None = None
        self.when = _EPOCH
        self.owner: Owner | None = None
        self.ended = False
        """The client half-closed while its origin was being reached."""
        self.reading = True
        """This callback is still registered as the client socket's reader."""
        self.flow: Flow | None = None
        """The client-to-origin flow of the relay, once there is one: this callback, still
        registered, passes readiness on to it (one registration change less per connection)."""

    def on_readable(self) -> None:
        """The client's first bytes (and the rest of a ClientHello): decide, or hand over;
        once allowed, what else the client sends while its origin is being reached."""
        flow = self.flow
        if flow is not None:
            flow.on_readable()
            return
        listener = self.listener
        try:
            data = self.sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            listener.drop(self)
            return
        if self.decision is not None:  # allowed, the origin not connected yet
            self.buffer += data
            if not data or len(self.buffer) > _STREAM_LIMIT:
                self.ended = not data
                self.reading = False
                listener.loop.remove_reader(self.fd)  # the rest waits in the kernel
            return
        if not data:
            # Ended before its first bytes were whole (or sent none): decided there.
            listener.hand_over(self, self.buffer, eof=True)
            return
        if not self.buffer and data[:4] in _HTTP_METHODS:
            listener.hand_over(self, data, eof=False)
            return
        buffer = self.buffer = self.buffer + data
        if buffer[0] != tls.RECORD_HANDSHAKE:
            listener.rule(self, _First(buffer))
            return
        try:
            name = tls.server_name(buffer)
        except tls.NeedMoreData:
            if len(buffer) > tls.MAX_CLIENT_HELLO + 1024:
                listener.hand_over(self, buffer, eof=False)  # refused there, with its event
            return  # else the rest of the ClientHello is on its way
        except tls.ParseError:
            listener.hand_over(self, buffer, eof=False)
            return
        listener.rule(self, _First(buffer, (name,) if name else (), "tls"))

    def on_connected(self) -> None:
        """The origin answered the connect (or refused it)."""
        self.listener.connected(self)


class Listener:
    """The transparent listener on one loopback address, driven by the loop's readiness
    callbacks (no `asyncio.Server`: see `enforcer.shim.intercept.pipe` for why).

    Each accepted connection is a `_Head` until its first bytes are whole. The hot case, a TLS
    connection (or one that carries no name) that is allowed, then reaches its original
    destination from a marked socket and becomes a `Pipe`. Everything else (plain HTTP, whose
    requests are decided one by one; a denial or a warning, with their pages, notifications
    and the user's own bypass; a parent proxy; a client that ends before its first bytes are
    whole) is handed, with the bytes read so far, to the stream-based
    `TransparentFrontEnd.handle`, which decides it again from the start.

    Offers what the interception service uses of an `asyncio.Server`: ``sockets``, ``close``
    and ``wait_closed``. Timeouts (first bytes, connect, idle) are checked by one sweep a
    second, not a timer per connection.
    """

    def __init__(
        self, frontend: TransparentFrontEnd, sock: socket.socket, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.frontend = frontend
        self.sock = sock
        self.loop = loop
        self.heads: set[_Head] = set()
        self.pipes = Pipes(loop, frontend.proxy.limits.idle_timeout)
        self.handed: set[asyncio.Task[None]] = set()
        self.closed = False
        loop.add_reader(sock.fileno(), self._accept)
        self._sweeper = loop.call_later(_SWEEP_SECONDS, self._sweep)

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening socket (as `asyncio.Server.sockets`)."""
        return [self.sock]

    def _accept(self) -> None:
        frontend = self.frontend
        loop = self.loop
        now = loop.time()
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of descriptors, most likely: stop accepting for a moment, as asyncio's
                # own servers do, instead of spinning on a listener that stays readable.
                log.warning("transparent listener cannot accept: %s", exc)
                loop.remove_reader(self.sock.fileno())
                loop.call_later(1.0, self._resume_accepting)
                return
            sock.setblocking(False)
            if frontend.proxy.parent is not None:
                self._serve_streams(sock, asyncio.StreamReader(limit=_STREAM_LIMIT))
                continue
            try:
                dest = original_destination(sock)
            except OSError:
                sock.close()  # not diverted: someone connected to the listener itself
                continue
            if dest[1] in frontend.own_ports and _is_loopback(dest[0]):
                sock.close()
                continue
            head = _Head(self, sock, peer, dest, now)
            self.heads.add(head)
            loop.add_reader(head.fd, head.on_readable)
            # The listener defers accepts until the client's first bytes are there
            # (TCP_DEFER_ACCEPT): read them now, not on the loop's next turn.
            head.on_readable()

    def _resume_accepting(self) -> None:
        if not self.closed:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def rule(self, head: _Head, first: _First) -> None:
        """Decide a connection whose first bytes are whole: relay it here if it is allowed."""
        frontend = self.frontend
        proxy = frontend.proxy
        decision = frontend._decide(proxy, first, head.dest[0])
        if decision.denied or decision.verdict.action is Action.WARN:
            self.hand_over(head, first.data, eof=False)
            return
        loop = self.loop
        # The client's reader stays: its callback now keeps what else arrives meanwhile.
        head.decision, head.when, head.buffer = decision, proxy.clock(), first.data
        head.started = loop.time()  # from now on: the connect timeout
        if frontend.attribution is not None:
            head.owner = frontend.attribution.owner("tcp", head.peer[0], head.peer[1], head.dest)
        origin = socket.socket(
            socket.AF_INET6 if ":" in head.dest[0] else socket.AF_INET,
            socket.SOCK_STREAM | socket.SOCK_NONBLOCK,  # non-blocking from the start
        )
        try:
            set_mark(origin, frontend.mark)
            origin.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            error = origin.connect_ex(head.dest)
            if error in (0, errno.EINPROGRESS):
                # A nearby origin (loopback, a LAN) has often answered by now: then the first
                # bytes go at once, without a wait for writability. A connect still under
                # way refuses them (EAGAIN), a refused one names its error.
                sent = origin.send(head.buffer)
                head.origin = origin
                self._relay(head, sent)
                return
        except (BlockingIOError, InterruptedError):
            head.origin = origin
            loop.add_writer(origin.fileno(), head.on_connected)
            return
        except OSError as exc:
            error = exc.errno or errno.EIO
        origin.close()
        self._unreachable(head)

    def connected(self, head: _Head) -> None:
        """An allowed connection's origin answered: relay, or record that it cannot."""
        origin = head.origin
        assert origin is not None
        self.loop.remove_writer(origin.fileno())
        if origin.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            origin.close()
            self._unreachable(head)
            return
        self._relay(head, 0)

    def _relay(self, head: _Head, sent: int) -> None:
        """Relay an allowed connection whose origin is connected; `sent`: how many of the
        first bytes it took already."""
        origin = head.origin
        assert origin is not None and head.decision is not None
        self.heads.discard(head)
        frontend = self.frontend
        events = frontend.proxy.events
        decision, when, owner = head.decision, head.when, head.owner
        client_ip = head.peer[0]
        dest_ip, dest_port = head.dest
        pipes = self.pipes

        def closed(up: int, down: int) -> None:
            # The event is built here with its process and user (no per-connection view of
            # the front end, as the stream path makes): this runs once per connection.
            pipes.live.discard(pipe)
            if events is None:
                return
            info = owner.info if owner is not None else None
            if info is None:
                info = _NO_OWNER
            events.record(
                decision.name, decision.action, decision.verdict,
                when=when, client_ip=client_ip, dest_ip=dest_ip, dest_port=dest_port,
                bytes_up=up, bytes_down=down, user=info.user or None, pid=info.pid,
                process_name=info.name, process_path=info.path,
            )  # fmt: skip

        pipe = Pipe(self.loop, head.sock, origin, closed)
        pipes.add(pipe)
        if head.reading:
            head.flow = pipe.up
        pipe.start(head.buffer, sent=sent, client_ended=head.ended, reading=head.reading)
        frontend._attribute_soon(head.owner)  # after the first bytes are on their way

    def _unreachable(self, head: _Head) -> None:
        """An allowed connection whose origin cannot be reached: recorded, client closed."""
        assert head.decision is not None
        self.heads.discard(head)
        self.loop.remove_reader(head.fd)
        view = self.frontend._view(head.owner)
        view.record(head.decision, head.when, head.peer[0], port=head.dest[1], dest_ip=head.dest[0])
        head.sock.close()

    def drop(self, head: _Head) -> None:
        """Close a connection that has not become a pipe (reset, timed out, shutdown)."""
        self.heads.discard(head)
        loop = self.loop
        loop.remove_reader(head.fd)
        if head.origin is not None:
            loop.remove_writer(head.origin.fileno())
            head.origin.close()
        head.sock.close()

    def hand_over(self, head: _Head, data: bytes, *, eof: bool) -> None:
        """Serve `head`'s connection with the stream-based front end, `data` read already."""
        self.heads.discard(head)
        self.loop.remove_reader(head.fd)
        reader = asyncio.StreamReader(limit=_STREAM_LIMIT)
        if data:
            reader.feed_data(data)
        if eof:
            reader.feed_eof()
        self._serve_streams(head.sock, reader)

    def _serve_streams(self, sock: socket.socket, reader: asyncio.StreamReader) -> None:
        handle = self.frontend.handle

        async def serve() -> None:
            try:
                await self.loop.connect_accepted_socket(
                    lambda: asyncio.StreamReaderProtocol(reader, handle), sock
                )
            except OSError:
                sock.close()

        task = self.loop.create_task(serve())
        self.handed.add(task)
        task.add_done_callback(self.handed.discard)

    def _sweep(self) -> None:
        """End what waited too long: first bytes, a connect, an idle pipe."""
        limits = self.frontend.proxy.limits
        now = self.loop.time()
        for head in list(self.heads):
            if head.origin is None:
                late = now - head.started >= limits.head_timeout
            else:
                late = now - head.started >= limits.connect_timeout
            if not late:
                continue
            if head.origin is not None:  # the connect timed out
                self.loop.remove_writer(head.origin.fileno())
                head.origin.close()
                self._unreachable(head)
            else:
                self.drop(head)
        self.pipes.sweep()
        if not self.closed:
            self._sweeper = self.loop.call_later(_SWEEP_SECONDS, self._sweep)

    def close(self) -> None:
        """Stop accepting; end the pipes and the connections not decided yet (connections
        already handed to the stream front end end on their own, as a server's do)."""
        if self.closed:
            return
        self.closed = True
        self._sweeper.cancel()
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for head in list(self.heads):
            self.drop(head)
        self.pipes.end_all()

    async def wait_closed(self) -> None:
        """Nothing to wait for once `close` returned (as `asyncio.Server.wait_closed`)."""


class _Attribute:
    """An event sink that adds the process and user of one connection to its events."""

    __slots__ = ("_owner", "_sink")

    def __init__(self, sink: Callable[[NetworkEvent], None], owner: Owner) -> None:
        self._sink = sink
        self._owner = owner

    def __call__(self, event: NetworkEvent) -> None:
        info = self._owner.info
        self._sink(attribute(event, info) if info is not None else event)


def _is_loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"


async def start_transparent(frontend: TransparentFrontEnd, host: str, port: int) -> Listener:
    """Listen for diverted connections on (host, port); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # Accepted sockets inherit it: the relay forwards what it reads at once.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A connection is handed to accept() once its first bytes are there (TLS and HTTP
        # clients speak first), so one wake-up of the shim serves both: accept and decide. A
        # client that sends nothing is accepted after the head timeout and ended by the sweep.
        head_timeout = max(1, round(frontend.proxy.limits.head_timeout))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, head_timeout)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return Listener(frontend, sock, asyncio.get_running_loop())
