"""The shim's forward proxy front end: HTTP and CONNECT requests turned into `Matcher` calls.

Browsers and apps on the endpoint use it as their HTTP(S) proxy. For plain HTTP it reads the
request head, decides on the request-target's host (and the Host header), and either answers with
a block or warning page or relays the request to the origin. For CONNECT it decides on the target
host, connects, and before forwarding a single client byte reads the TLS ClientHello's server name
(SNI) and decides on that too, so that a tunnel to an allowed front cannot reach a blocked app
(domain fronting). Nothing is decrypted.

HTTPS cannot carry a page without decrypting, so a denied HTTPS connection is refused (403 to the
CONNECT, or a TLS ``access_denied`` alert when only the SNI is denied) and the user is told through
a desktop notification. For `warn` indicators the notification points to the proxy's own warning
page, served by this same server over plain HTTP on loopback; its "Continue" button records a
per-user bypass, and the retried connection passes.

Every proxied connection becomes one `NetworkEvent` given to ``on_event``: at denial, or at the end
of the connection with its byte counts (``bytes_up``: bytes sent to the origin, ``bytes_down``:
bytes sent back to the client). Its ``time`` is when the connection was decided.

Simplifications, on purpose: each client connection carries one plain-HTTP request (the proxy
answers ``Connection: close``), which keeps body framing simple and correct; plain HTTP is rare
next to CONNECT. ``https://`` absolute-form requests (TLS to the origin done by the proxy) are
refused with 501: clients use CONNECT for HTTPS.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import getpass
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import NamedTuple
from urllib.parse import parse_qs, quote, urlsplit

from enforcer.decide.matcher import NOT_GOVERNED, Matcher, Verdict
from enforcer.models import Action, EventAction, NetworkEvent
from enforcer.shim.proxy import pages, tls
from enforcer.shim.proxy.bypass import BypassStore
from enforcer.shim.proxy.notify import Notifier, notify

log = logging.getLogger(__name__)

StreamPair = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Connector = Callable[[str, int], Awaitable[StreamPair]]
"""Opens the upstream TCP connection for (host, port); tests inject one that pins names."""
EventSink = Callable[[NetworkEvent], None]

SOURCE = "proxy"
INBAND_CONTINUE = "/.well-known/enforcer/continue"
"""Path on a warned plain-HTTP site where the proxy itself answers the "Continue" form."""
_CHUNK = 64 * 1024
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 1 << 20
_CRLF = b"\r\n"
_HEAD_END = b"\r\n\r\n"
_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
# TLS alert record: level fatal (2), description access_denied (49). A browser shows a clear
# error for it instead of a generic connection reset.
_TLS_ACCESS_DENIED = b"\x15\x03\x01\x00\x02\x02\x31"
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_NOT_TARGET = re.compile(r"[^\x21-\x7e]")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_HOP_BY_HOP = frozenset(
    {"connection", "proxy-connection", "keep-alive", "proxy-authorization", "te", "upgrade"}
)
_REASONS = {
    200: "OK",
    303: "See Other",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}
# Which outcome wins when the CONNECT host and the SNI disagree: the most restrictive one.
_RANK = {
    EventAction.ALLOWED: 0,
    EventAction.AUDITED: 1,
    EventAction.BYPASSED: 2,
    EventAction.WARNED: 3,
    EventAction.BLOCKED: 4,
}
_DENIED = frozenset({EventAction.BLOCKED, EventAction.WARNED})


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
    max_form_bytes: int = 8 * 1024
    """Largest body of a POST to the proxy's own pages."""
    notify_interval: float = 30.0
    """Seconds during which repeated denials of the same app do not notify again (a page load
    opens many connections)."""
    token_lifetime: dt.timedelta = dt.timedelta(hours=1)
    """How long a warning page's "Continue" button stays valid."""


class BadRequest(Exception):
    """A request the proxy refuses to parse; answered with `status` and the connection closed."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A parsed request line and header fields, values as sent (latin-1 decoded)."""

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        """The first value of a header field, by case-insensitive name."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class Target(NamedTuple):
    """Where a request goes: a host (lower-case, IPv6 without brackets), a port, a path."""

    host: str
    port: int
    path: str = ""

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def http_authority(self) -> str:
        """The authority as an http URL or a Host header writes it: no port when it is 80."""
        return self.authority.removesuffix(":80")


class Decision(NamedTuple):
    """The outcome for a connection and the name and verdict that decided it."""

    action: EventAction
    name: str
    verdict: Verdict

    @property
    def denied(self) -> bool:
        return self.action in _DENIED


# ---------------------------------------------------------------------------------------------
# Parsing: pure functions that raise only BadRequest.


def _split_head(data: bytes, max_headers: int) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Split a head ending in CRLF CRLF into its start line and validated header fields."""
    lines = data.decode("latin-1").split("\r\n")
    while lines and lines[0] == "":
        lines.pop(0)  # RFC 9112 2.2: ignore empty lines before the request line
    if not lines:
        raise BadRequest(400, "empty request")
    start, fields = lines[0], lines[1:]
    while fields and fields[-1] == "":
        fields.pop()
    if len(fields) > max_headers:
        raise BadRequest(431, f"more than {max_headers} header fields")
    headers = []
    for line in fields:
        name, sep, value = line.partition(":")
        if not sep or not name or not _TOKEN_CHARS.issuperset(name):
            raise BadRequest(400, "malformed header field")
        value = value.strip(" \t")
        if _CONTROL.search(value):
            raise BadRequest(400, "control character in a header value")
        headers.append((name, value))
    return start, tuple(headers)


def parse_head(data: bytes, max_headers: int = 100) -> RequestHead:
    """Parse a request head (request line, header fields, empty line) or raise `BadRequest`."""
    start, headers = _split_head(data, max_headers)
    parts = start.split(" ")
    if len(parts) != 3:
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if not method or not _TOKEN_CHARS.issuperset(method):
        raise BadRequest(400, "malformed method")
    if not target or _NOT_TARGET.search(target):
        raise BadRequest(400, "malformed request target")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        status = 505 if version.startswith("HTTP/") else 400
        raise BadRequest(status, "unsupported HTTP version")
    head = RequestHead(method, target, version, headers)
    _check_framing(head)
    return head


def _check_framing(head: RequestHead) -> None:
    """Refuse bodies whose length two parties could read differently (request smuggling)."""
    lengths = {v.strip() for k, v in head.headers if k.lower() == "content-length"}
    codings = [v for k, v in head.headers if k.lower() == "transfer-encoding"]
    if lengths and codings:
        raise BadRequest(400, "both Content-Length and Transfer-Encoding")
    if len(lengths) > 1 or any(not v.isdigit() or len(v) > 18 for v in lengths):
        raise BadRequest(400, "bad Content-Length")
    if codings and (len(codings) > 1 or codings[0].strip().lower() != "chunked"):
        raise BadRequest(501, "unsupported Transfer-Encoding")


def parse_host(text: str) -> str:
    """Validate a host (a DNS name or an IP literal, IPv6 in brackets) and return it lower-case."""
    if text.startswith("[") and text.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(text[1:-1]))
        except ValueError:
            raise BadRequest(400, "bad IPv6 literal") from None
    host = text.lower().rstrip(".")
    if not host or len(host) > 253 or not _HOST_CHARS.issuperset(host) or ".." in host:
        raise BadRequest(400, "bad host name")
    return host


def parse_authority(text: str, default_port: int | None = None) -> Target:
    """Parse ``host[:port]`` (a CONNECT target or a Host header) or raise `BadRequest`."""
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise BadRequest(400, "bad IPv6 literal")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise BadRequest(400, "bad authority")
        port_text = rest[1:]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
    if port_text:
        if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
            raise BadRequest(400, "bad port")
        port = int(port_text)
    elif default_port is None:
        raise BadRequest(400, "missing port")
    else:
        port = default_port
    return Target(parse_host(host), port)


def parse_absolute(target: str) -> Target:
    """Parse an absolute-form ``http://host[:port]/path?query`` request-target."""
    scheme, sep, rest = target.partition("://")
    if not sep:
        raise BadRequest(400, "malformed request target")
    if scheme.lower() != "http":
        raise BadRequest(501, f"{scheme} requests must use CONNECT")
    end = len(rest)
    for stop in "/?#":
        at = rest.find(stop)
        if 0 <= at < end:
            end = at
    authority, path = rest[:end], rest[end:]
    if "@" in authority:
        raise BadRequest(400, "user information in the request target")
    path = path.partition("#")[0]
    if not path.startswith("/"):
        path = "/" + path
    return parse_authority(authority, 80)._replace(path=path)


# ---------------------------------------------------------------------------------------------
# Stream helpers.


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    """Read up to the end of a head; None if the peer closed before sending anything."""
    try:
        return await reader.readuntil(_HEAD_END)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadRequest(400, "connection closed inside the request head") from None
    except asyncio.LimitOverrunError:
        raise BadRequest(431, "request head too large") from None


class _Meter:
    """A byte count shared between a copying task and the code that reports it."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


async def _copy_exactly(
    src: asyncio.StreamReader, dst: asyncio.StreamWriter, size: int, meter: _Meter
) -> None:
    left = size
    while left:
        data = await src.read(min(left, _CHUNK))
        if not data:
            raise asyncio.IncompleteReadError(b"", left)
        dst.write(data)
        meter.n += len(data)
        await dst.drain()
        left -= len(data)


async def _copy_line(src: asyncio.StreamReader, dst: asyncio.StreamWriter, meter: _Meter) -> bytes:
    line = await src.readuntil(_CRLF)
    dst.write(line)
    meter.n += len(line)
    return line


async def _copy_chunked(
    src: asyncio.StreamReader, dst: asyncio.StreamWriter, meter: _Meter
) -> None:
    """Copy one chunked message body verbatim, reading its framing to know where it ends."""
    while True:
        line = await _copy_line(src, dst, meter)
        size_text = line[:-2].split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 15 or not _HEX.issuperset(size_text):
            raise BadRequest(400, "bad chunk size")
        size = int(size_text, 16)
        if size == 0:
            break
        await _copy_exactly(src, dst, size, meter)
        if await _copy_line(src, dst, meter) != _CRLF:
            raise BadRequest(400, "chunk not followed by CRLF")
    while await _copy_line(src, dst, meter) != _CRLF:
        pass  # trailer fields, up to the empty line
    await dst.drain()


async def _copy_to_eof(src: asyncio.StreamReader, dst: asyncio.StreamWriter, meter: _Meter) -> None:
    while data := await src.read(_CHUNK):
        dst.write(data)
        meter.n += len(data)
        await dst.drain()


async def _copy_body(
    src: asyncio.StreamReader,
    dst: asyncio.StreamWriter,
    headers: Iterable[tuple[str, str]],
    meter: _Meter,
    *,
    until_eof: bool,
) -> None:
    """Copy a message body framed by its headers; `until_eof` when neither frames it."""
    for name, value in headers:
        key = name.lower()
        if key == "transfer-encoding":
            if value.rsplit(",", 1)[-1].strip().lower() == "chunked":
                return await _copy_chunked(src, dst, meter)
            break
        if key == "content-length":
            if not value.strip().isdigit():
                raise BadRequest(502, "bad Content-Length")
            return await _copy_exactly(src, dst, int(value), meter)
    if until_eof:
        await _copy_to_eof(src, dst, meter)


def _forward_headers(
    headers: Iterable[tuple[str, str]], drop: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """Headers without the hop-by-hop ones (RFC 9110 7.6.1), those named in Connection included."""
    headers = list(headers)
    named = {
        token.strip().lower()
        for key, value in headers
        if key.lower() == "connection"
        for token in value.split(",")
    }
    named -= {"content-length", "transfer-encoding"}
    dropped = _HOP_BY_HOP | named | set(drop)
    return [(k, v) for k, v in headers if k.lower() not in dropped]


def _encode_head(start: str, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [start, *(f"{k}: {v}" for k, v in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _response(
    status: int,
    body: bytes,
    content_type: str = "text/html; charset=utf-8",
    extra: Iterable[tuple[str, str]] = (),
) -> bytes:
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("Connection", "close"),
        *extra,
    ]
    return _encode_head(f"HTTP/1.1 {status} {_REASONS[status]}", headers) + body


def _error_response(status: int, detail: str) -> bytes:
    body = f"{status} {_REASONS[status]}: {detail}\n".encode()
    return _response(status, body, "text/plain; charset=utf-8")


def app_key(verdict: Verdict) -> str:
    """What a bypass is recorded for: the app of a warn indicator, else the indicator itself."""
    return verdict.app_id or verdict.indicator


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ---------------------------------------------------------------------------------------------
# The front end.


class ProxyFrontEnd:
    """Decides and relays the connections of one endpoint user; serve it with `start_proxy`.

    `matcher` is read through the attribute on every decision, so the caller may update it in
    place or assign a new one at any time. `connect` opens upstream connections (tests pin names
    to local servers with it). `notifier` shows desktop notifications (default: `notify`).
    `app_names` maps app ids to display names for pages and notifications (default: the ids).
    `on_event` runs on the event loop, once per connection: it must not block.
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
    ) -> None:
        self.matcher = matcher
        self.bypasses = bypasses
        self.on_event = on_event
        self.notifier = notifier if notifier is not None else notify
        self.user = user if user is not None else getpass.getuser()
        self.limits = limits or ProxyLimits()
        self.connect = connect or self._open_connection
        self.clock = clock
        self.app_names = app_names if app_names is not None else {}
        self._secret = secrets.token_bytes(32)
        self._notified: dict[tuple[EventAction, str], float] = {}
        self.pages_host = "127.0.0.1"
        self.pages_port = 0

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

    async def _open_connection(self, host: str, port: int) -> StreamPair:
        return await asyncio.open_connection(host, port, limit=self.limits.max_head_bytes)

    def _is_self(self, target: Target) -> bool:
        names = _LOOPBACK_NAMES | {self.pages_host}
        return target.port == self.pages_port and target.host in names

    # -- decisions

    def app_label(self, decision: Decision) -> str:
        """The app's name as users know it ("Dropbox"), for pages and notifications."""
        verdict = decision.verdict
        return self.app_names.get(verdict.app_id) or app_key(verdict) or decision.name

    def decide(self, names: Iterable[str]) -> Decision:
        """The most restrictive outcome over the names a connection carries (host, SNI)."""
        best: Decision | None = None
        for name in names:
            verdict = self.matcher.verdict(name)
            action = self._outcome(verdict)
            if best is None or _RANK[action] > _RANK[best.action]:
                best = Decision(action, name, verdict)
        if best is None:
            raise ValueError("decide() needs at least one name")
        return best

    def _outcome(self, verdict: Verdict) -> EventAction:
        action = verdict.action
        if action is None or action is Action.ALLOWED:
            return EventAction.ALLOWED
        if action is Action.BLOCK:
            return EventAction.BLOCKED
        if action is Action.WARN:
            if self.bypasses.is_bypassed(self.user, app_key(verdict), self.clock()):
                return EventAction.BYPASSED
            return EventAction.WARNED
        # Audit and Alert both let the connection through and record it.
        return EventAction.AUDITED

    def _emit(
        self,
        decision: Decision,
        when: dt.datetime,
        client_ip: str,
        *,
        port: int,
        dest_ip: str = "",
        up: int = 0,
        down: int = 0,
    ) -> None:
        if self.on_event is None:
            return
        event = NetworkEvent(
            time=when,
            source=SOURCE,
            domain=decision.name,
            action=decision.action,
            indicator=decision.verdict.indicator,
            app_id=decision.verdict.app_id,
            dest_ip=dest_ip,
            dest_port=port,
            bytes_up=up,
            bytes_down=down,
            user=self.user,
            client_ip=client_ip,
        )
        try:
            self.on_event(event)
        except Exception:
            log.exception("event sink failed")

    def _notify_denied(self, decision: Decision) -> None:
        verdict = decision.verdict
        app = self.app_label(decision)
        key = (decision.action, app)
        now = asyncio.get_running_loop().time()
        last = self._notified.get(key)
        if last is not None and now - last < self.limits.notify_interval:
            return
        self._notified[key] = now
        if decision.action is EventAction.WARNED:
            title = f"{app} needs your confirmation"
            body = (
                f"{decision.name} was not opened. To continue, open {self.warn_url(decision.name)}"
            )
        else:
            title = f"{app} is blocked"
            body = (
                f"{decision.name} is blocked by your organisation's policy ({verdict.indicator})."
            )
        try:
            self.notifier(title, body)
        except Exception:
            log.exception("notifier failed")

    # -- connection handling

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection (the `asyncio.start_server` callback); never raises."""
        peer = writer.get_extra_info("peername")
        client_ip = peer[0] if isinstance(peer, tuple) else ""
        try:
            await self._serve(reader, writer, client_ip)
        except BadRequest as exc:
            await _send_quietly(writer, _error_response(exc.status, exc.detail))
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
            await _close(reader, writer)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client_ip: str
    ) -> None:
        try:
            async with asyncio.timeout(self.limits.head_timeout):
                data = await _read_head(reader)
        except TimeoutError:
            raise BadRequest(408, "request head not received in time") from None
        if data is None:
            return
        head = parse_head(data, self.limits.max_headers)
        if head.method == "CONNECT":
            await self._tunnel(head, reader, writer, client_ip)
        elif head.target.startswith("/"):
            await self._local(head, reader, writer, self._host_header(head))
        else:
            target = parse_absolute(head.target)
            if self._is_self(target):
                await self._local(replace(head, target=target.path), reader, writer, target)
            else:
                await self._forward(head, target, reader, writer, client_ip)

    def _host_header(self, head: RequestHead) -> Target | None:
        value = head.header("host")
        if value is None:
            if head.version == "HTTP/1.1":
                raise BadRequest(400, "missing Host header")
            return None
        return parse_authority(value, 80)

    # -- plain HTTP

    async def _forward(
        self,
        head: RequestHead,
        target: Target,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client_ip: str,
    ) -> None:
        host_header = self._host_header(head)
        names = [target.host]
        if host_header is not None and host_header.host != target.host:
            names.append(host_header.host)
        decision = self.decide(names)
        when = self.clock()
        if decision.verdict.action is Action.WARN and target.path == INBAND_CONTINUE:
            if head.method != "POST":
                raise BadRequest(405, "method not allowed")
            form = await self._read_form(head, reader)
            writer.write(self._continue_response(form, writer))
            await writer.drain()
            return
        if decision.denied:
            self._emit(decision, when, client_ip, port=target.port)
            writer.write(self._denied_page(decision, target))
            await writer.drain()
            return
        try:
            upstream = await self._open(target)
        except BadRequest:
            self._emit(decision, when, client_ip, port=target.port)
            raise
        up_reader, up_writer = upstream
        dest_ip = _peer_ip(up_writer)
        up, down = _Meter(), _Meter()
        request = _encode_head(
            f"{head.method} {target.path} {head.version}",
            [
                ("Host", target.http_authority),
                *_forward_headers(head.headers, drop=("host",)),
                ("Connection", "close"),
            ],
        )
        up_writer.write(request)
        up.n = len(request)

        async def send_body() -> None:
            try:
                await _copy_body(reader, up_writer, head.headers, up, until_eof=False)
            except BaseException:
                up_writer.transport.abort()  # wakes the response side instead of waiting
                raise

        # The origin may answer before the body is complete (100-continue, early errors):
        # both directions run at once.
        sender = asyncio.create_task(send_body())
        try:
            async with asyncio.timeout(self.limits.idle_timeout):
                await self._relay_response(head, up_reader, writer, down)
        except (BadRequest, TimeoutError) as exc:
            if down.n:
                return  # part of the response is out: an error status would corrupt it
            if isinstance(exc, TimeoutError):
                raise BadRequest(504, "the origin did not answer in time") from None
            raise
        finally:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender
            up_writer.close()
            self._emit(
                decision, when, client_ip, port=target.port, dest_ip=dest_ip, up=up.n, down=down.n
            )

    async def _relay_response(
        self,
        head: RequestHead,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        meter: _Meter,
    ) -> None:
        """Relay the origin's response heads and body, counting the bytes sent to the client."""
        while True:
            try:
                data = await _read_head(src)
                if data is None:
                    raise BadRequest(502, "the origin closed the connection without answering")
                start, headers = _split_head(data, self.limits.max_headers)
                status = int(start.split(" ", 2)[1])
            except (BadRequest, ValueError, IndexError):
                raise BadRequest(502, "malformed response from the origin") from None
            if 100 <= status < 200 and status != 101:
                dst.write(data)  # interim response (100 Continue): no body, more to come
                meter.n += len(data)
                continue
            out = _encode_head(start, [*_forward_headers(headers), ("Connection", "close")])
            dst.write(out)
            meter.n += len(out)
            if head.method != "HEAD" and status not in (204, 304):
                await _copy_body(src, dst, headers, meter, until_eof=True)
            await dst.drain()
            return

    def _denied_page(self, decision: Decision, target: Target) -> bytes:
        verdict = decision.verdict
        app = self.app_label(decision)
        action = verdict.action.policy_word if verdict.action else ""
        if decision.action is EventAction.BLOCKED:
            body = pages.block_page(
                app=app, host=decision.name, indicator=verdict.indicator, action=action
            )
        else:
            # The form posts to the warned site itself, where this proxy answers it: a post
            # from a public site to a loopback address may be held up by the browser's
            # local-network protections.
            site = f"http://{target.http_authority}"
            body = self._warn_page(decision, site + target.path, site + INBAND_CONTINUE)
        return _response(403, body)

    def _warn_page(self, decision: Decision, return_url: str, continue_url: str = "") -> bytes:
        verdict = decision.verdict
        expires = int((self.clock() + self.limits.token_lifetime).timestamp())
        return pages.warn_page(
            app=self.app_label(decision),
            host=decision.name,
            indicator=verdict.indicator,
            action=verdict.action.policy_word if verdict.action else "",
            continue_url=continue_url or f"{self.pages_url}/continue",
            expires=expires,
            token=self._token(app_key(verdict), decision.name, expires),
            return_url=return_url,
            ttl=self.bypasses.ttl,
        )

    def _token(self, app: str, host: str, expires: int) -> str:
        """Proof that a "Continue" POST comes from a warning page this process rendered."""
        message = f"{self.user}\x1f{app}\x1f{host}\x1f{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    # -- CONNECT

    async def _tunnel(
        self,
        head: RequestHead,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client_ip: str,
    ) -> None:
        target = parse_authority(head.target)
        decision = self.decide([target.host])
        when = self.clock()
        if decision.denied:
            self._deny_tunnel(decision, when, client_ip, target, writer)
            await writer.drain()
            return
        # Connect before answering 200 so that an unreachable origin becomes a 502 the client
        # can report, and server-speaks-first protocols work. No client byte is forwarded
        # before the SNI check below.
        try:
            up_reader, up_writer = await self._open(target)
        except BadRequest:
            self._emit(decision, when, client_ip, port=target.port)
            raise
        dest_ip = _peer_ip(up_writer)
        writer.write(_ESTABLISHED)
        relay = _Relay(reader, writer, up_reader, up_writer, self.limits.idle_timeout)
        try:
            first = await self._first_bytes(reader, relay)
            if first.tls:
                decision = self._check_sni(decision, target, first)
                if decision.denied:
                    writer.write(_TLS_ACCESS_DENIED)
                    self._notify_denied(decision)
                    return
            up_writer.write(first.data)
            relay.up.n += len(first.data)
            await relay.run(client_done=not first.data)
        finally:
            relay.close()
            self._emit(
                decision,
                when,
                client_ip,
                port=target.port,
                dest_ip=dest_ip,
                up=relay.up.n,
                down=relay.down.n,
            )

    def _deny_tunnel(
        self,
        decision: Decision,
        when: dt.datetime,
        client_ip: str,
        target: Target,
        writer: asyncio.StreamWriter,
    ) -> None:
        verdict = decision.verdict
        warn_url = self.warn_url(decision.name) if decision.action is EventAction.WARNED else ""
        body = pages.denied_text(
            app=self.app_label(decision),
            host=decision.name,
            indicator=verdict.indicator,
            action=verdict.action.policy_word if verdict.action else "",
            warn_url=warn_url,
        )
        writer.write(_response(403, body, "text/plain; charset=utf-8"))
        self._notify_denied(decision)
        self._emit(decision, when, client_ip, port=target.port)

    async def _first_bytes(self, reader: asyncio.StreamReader, relay: _Relay) -> _FirstBytes:
        """The client's first bytes (a whole ClientHello if they start one; b"" at EOF).

        The origin-to-client direction runs meanwhile, for protocols where the server speaks
        first; the wait for those first bytes is bounded by the relay's idle timeout, the wait
        for the rest of a ClientHello by the head timeout.
        """
        relay.start_down()
        async with asyncio.timeout(self.limits.idle_timeout) as deadline:
            data = await reader.read(_CHUNK)
            if not tls.looks_like_tls(data):
                return _FirstBytes(data)
            deadline.reschedule(asyncio.get_running_loop().time() + self.limits.head_timeout)
            while True:
                try:
                    return _FirstBytes(data, tls=True, server_name=tls.server_name(data))
                except tls.NeedMoreData as exc:
                    more = await reader.read(_CHUNK)
                    if not more or len(data) > tls.MAX_CLIENT_HELLO + 1024:
                        return _FirstBytes(data, tls=True, error=str(exc))
                    data += more
                except tls.ParseError as exc:
                    return _FirstBytes(data, tls=True, error=str(exc))

    def _check_sni(self, decision: Decision, target: Target, first: _FirstBytes) -> Decision:
        """Combine the CONNECT decision with the ClientHello's server name, if any."""
        if first.error:
            # A real TLS server would refuse it too; refusing means no parser gap can be used
            # to slip a blocked name past the check.
            log.info(
                "denying CONNECT %s: unreadable ClientHello (%s)", target.authority, first.error
            )
            return Decision(EventAction.BLOCKED, target.host, NOT_GOVERNED)
        name = first.server_name
        if name is None or name == target.host:
            return decision
        sni = self.decide([name])
        return sni if _RANK[sni.action] > _RANK[decision.action] else decision

    async def _open(self, target: Target) -> StreamPair:
        try:
            async with asyncio.timeout(self.limits.connect_timeout):
                return await self.connect(target.host, target.port)
        except TimeoutError:
            raise BadRequest(504, f"connecting to {target.authority} timed out") from None
        except OSError as exc:
            raise BadRequest(
                502, f"cannot connect to {target.authority}: {exc.strerror or exc}"
            ) from None

    # -- the proxy's own pages

    async def _local(
        self,
        head: RequestHead,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: Target | None,
    ) -> None:
        # Checking Host defeats DNS rebinding: a web page whose name resolves to 127.0.0.1
        # would otherwise be same-origin with these pages and could read a token.
        if host is None or not self._is_self(host):
            raise BadRequest(400, "not a proxy request and not addressed to this proxy")
        path, _, query = head.target.partition("?")
        if path == "/warn" and head.method in ("GET", "HEAD"):
            response = self._warn_response(parse_qs(query))
        elif path == "/continue" and head.method == "POST":
            form = await self._read_form(head, reader)
            response = self._continue_response(form, writer)
        elif path in ("/warn", "/continue"):
            raise BadRequest(405, "method not allowed")
        else:
            response = _response(404, pages.message_page("Not found", "No such page."))
        if head.method == "HEAD":
            response = response.partition(_HEAD_END)[0] + _HEAD_END
        writer.write(response)
        await writer.drain()

    def _warn_decision(self, host_values: list[str] | None) -> Decision | bytes:
        """The warn decision for the page's host, or the response explaining why there is none."""
        try:
            host = parse_host(host_values[0]) if host_values else ""
        except BadRequest:
            host = ""
        if not host:
            return _response(400, pages.message_page("Bad request", "Which site?"))
        decision = self.decide([host])
        if decision.verdict.action is not Action.WARN:
            page = pages.message_page("Nothing to confirm", f"No warning applies to {host}.")
            return _response(404, page)
        if decision.action is EventAction.BYPASSED:
            message = f"You already chose to continue to {self.app_label(decision)}."
            return _response(200, pages.message_page("Continue", message, f"https://{host}/"))
        return decision

    def _warn_response(self, query: dict[str, list[str]]) -> bytes:
        decision = self._warn_decision(query.get("host"))
        if isinstance(decision, bytes):
            return decision
        return_url = _safe_return(query.get("return"), decision.name)
        return _response(200, self._warn_page(decision, return_url))

    async def _read_form(
        self, head: RequestHead, reader: asyncio.StreamReader
    ) -> dict[str, list[str]]:
        length_text = head.header("content-length")
        if length_text is None:
            raise BadRequest(400, "form without Content-Length")
        length = int(length_text)
        if length > self.limits.max_form_bytes:
            raise BadRequest(413, "form too large")
        try:
            async with asyncio.timeout(self.limits.head_timeout):
                body = await reader.readexactly(length)
        except TimeoutError:
            raise BadRequest(408, "form not received in time") from None
        return parse_qs(body.decode("latin-1"))

    def _continue_response(self, form: dict[str, list[str]], writer: asyncio.StreamWriter) -> bytes:
        decision = self._warn_decision(form.get("host"))
        if isinstance(decision, bytes):
            return decision
        app = app_key(decision.verdict)
        try:
            expires = int(form.get("expires", [""])[0])
        except ValueError:
            expires = 0
        token = form.get("token", [""])[0]
        expected = self._token(app, decision.name, expires)
        now = self.clock()
        if expires < now.timestamp() or not hmac.compare_digest(token.encode(), expected.encode()):
            page = pages.message_page(
                "Please try again",
                "This confirmation has expired or was not made on this computer's warning page.",
                self.warn_url(decision.name),
            )
            return _response(403, page)
        self.bypasses.grant(self.user, app, now)
        log.info("user %s bypassed the warning for %s", self.user, app)
        granted = decision._replace(action=EventAction.BYPASSED)
        peer = writer.get_extra_info("peername")
        self._emit(granted, now, peer[0] if isinstance(peer, tuple) else "", port=0)
        return_url = _safe_return(form.get("return"), decision.name)
        ttl = pages.describe_ttl(self.bypasses.ttl)
        message = f"You can use {self.app_label(decision)} for {ttl}."
        body = pages.message_page("Continue", message, return_url)
        return _response(303, body, extra=[("Location", return_url)])


class _FirstBytes(NamedTuple):
    """What a tunnel's client sent first, and the server name read from it if it is TLS."""

    data: bytes
    tls: bool = False
    server_name: str | None = None
    error: str = ""
    """Why the bytes, which start like TLS, are not a readable ClientHello."""


class _Relay:
    """Both directions of a tunnel and their byte counts, closed when idle in both directions."""

    def __init__(
        self,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        idle_timeout: float,
    ) -> None:
        self.client_reader, self.client_writer = client_reader, client_writer
        self.up_reader, self.up_writer = up_reader, up_writer
        self.idle_timeout = idle_timeout
        self.up = _Meter()
        self.down = _Meter()
        self._down_task: asyncio.Task[None] | None = None

    def start_down(self) -> None:
        """Start relaying origin to client (before the client's first bytes are checked)."""
        if self._down_task is None:
            self._down_task = asyncio.create_task(
                _pump(self.up_reader, self.client_writer, self.down)
            )

    async def run(self, *, client_done: bool) -> None:
        """Relay until both directions end, or until no byte moved for an idle period.

        Idleness is checked once per period (no timer per chunk on this hot path), so an idle
        tunnel closes after one to two idle timeouts.
        """
        self.start_down()
        assert self._down_task is not None
        pending: set[asyncio.Task[None]] = {self._down_task}
        if client_done:
            if self.up_writer.can_write_eof():
                self.up_writer.write_eof()
        else:
            pending.add(asyncio.create_task(_pump(self.client_reader, self.up_writer, self.up)))
        moved = -1
        while pending and moved != self.up.n + self.down.n:
            moved = self.up.n + self.down.n
            _, pending = await asyncio.wait(pending, timeout=self.idle_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def close(self) -> None:
        if self._down_task is not None:
            self._down_task.cancel()
        self.up_writer.close()


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, meter: _Meter) -> None:
    """One direction of a tunnel: copy to EOF, then pass the half-close on."""
    with contextlib.suppress(ConnectionError, OSError):
        await _copy_to_eof(src, dst, meter)
        if dst.can_write_eof():
            dst.write_eof()


def _peer_ip(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) else ""


def _safe_return(values: list[str] | None, host: str) -> str:
    """The page to go back to after "Continue": only on the bypassed host (no open redirect)."""
    if values:
        url = urlsplit(values[0])
        if url.scheme in ("http", "https") and (url.hostname or "").rstrip(".") == host:
            return url.geturl()
    return f"https://{host}/"


async def _close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close a client connection without losing the answer just written to it.

    Closing a socket with unread input makes the kernel send a reset, which can destroy the
    answer (a block page, a 400) before the client reads it. So: send FIN, then read and discard
    what the client still sends, for a bounded time and size, before closing.
    """
    with contextlib.suppress(Exception):
        if not writer.is_closing() and writer.can_write_eof():
            await writer.drain()
            writer.write_eof()
            async with asyncio.timeout(_LINGER_SECONDS):
                left = _LINGER_BYTES
                while left > 0 and (data := await reader.read(_CHUNK)):
                    left -= len(data)
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


async def _send_quietly(writer: asyncio.StreamWriter, data: bytes) -> None:
    with contextlib.suppress(Exception):
        writer.write(data)
        await writer.drain()


async def start_proxy(
    frontend: ProxyFrontEnd, host: str = "127.0.0.1", port: int = 0
) -> asyncio.Server:
    """Listen on (host, port) and serve `frontend`; port 0 picks a free port.

    The caller stops it with ``server.close()`` and ``await server.wait_closed()``; the bound
    port is ``frontend.pages_port``.
    """
    server = await asyncio.start_server(
        frontend.handle, host, port, limit=frontend.limits.max_head_bytes
    )
    bound = server.sockets[0].getsockname()
    frontend.listening_on(str(bound[0]), int(bound[1]))
    log.info(
        "proxy listening on %s for user %s: %d indicators, bypasses for %s (%s), limits %s",
        frontend.pages_url,
        frontend.user,
        len(frontend.matcher),
        frontend.bypasses.ttl,
        frontend.bypasses.path or "in memory",
        frontend.limits,
    )
    return server
