"""HTTP/1.1 for the proxy: request heads and targets, the plain-HTTP exchange, fixed responses.

* `parse_head` reads a request head (request line, header fields) strictly, by hand: a malformed
  head, a version other than HTTP/1.0 or 1.1, control characters in a value, or a body two
  parties could frame differently (both Content-Length and Transfer-Encoding, a coding other
  than chunked: request smuggling) raise `BadRequest` with the status to answer.
  `parse_authority`, `parse_absolute` and `parse_host` read the request target and Host header
  into a `Target`; `read_head` reads a head off a stream (the stream's limit bounds its size).
  `starts_request` tells whether a stream's first bytes are an HTTP/1 request (inside a CONNECT
  tunnel, where plain HTTP must be decided on its Host like any other request).
  Every CONNECT goes through this parser, so it is the measured hot path: it takes about 12 µs
  for a CONNECT head where h11 takes about 48 µs, and it refuses what h11 lets through (bare LF
  line ends, folded lines, control characters, Content-Length with Transfer-Encoding).
* `Exchange` relays one plain-HTTP request and its response with h11 on both sides: bodies
  (Content-Length, chunked, to EOF), interim responses, HEAD/204/304 are framed by h11 rather
  than by hand, and h11 says whether the client connection can carry another request
  (`Exchange.keep_alive`, the bytes already read of it in `Exchange.leftover`).
  `read_next_head` reads the next request head of a kept-alive client connection.
* `response` and `error_response` build the proxy's own complete answers
  (``Connection: close``: a denial or an error ends the client connection).

The parsers raise only `BadRequest` on bad input (a hypothesis test checks them).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import h11

from enforcer.shim.proxy.relay import CHUNK, Meter
from enforcer.wire.limits import DOMAIN_MAX

HEAD_END = b"\r\n\r\n"
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")
_NOT_TARGET = re.compile(r"[^\x21-\x7e]")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_METHOD = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,20}"
"""A request method as `starts_request` sees it: registered ones have at most 17 characters."""
_REQUEST_LINE = re.compile(_METHOD + rb" [\x21-\x7e]+ HTTP/[0-9]\.[0-9]\r?\n")
_REQUEST_LINE_START = re.compile(_METHOD + rb"(?: [\x21-\x7e]*(?: [HTP/0-9.]*\r?)?)?")
_HOP_BY_HOP = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"proxy-authorization", b"te", b"upgrade"}
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
    if not host or len(host) > DOMAIN_MAX or not _HOST_CHARS.issuperset(host) or ".." in host:
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


def starts_request(data: bytes) -> bool | None:
    """Whether a stream starting with `data` carries HTTP/1: True when its first line is a
    request line (``METHOD target HTTP/x.y``), False when it cannot be one, None when `data` is
    too short to tell (read more).

    Any method counts, not only the registered ones: a request that reaches a server is
    decided on its Host whatever its method. A complete first line of another text protocol
    (``SSH-2.0-...``, ``EHLO ...``) is False.
    """
    data = data.lstrip(b"\r\n")
    if _REQUEST_LINE.match(data):
        return True
    if not data or _REQUEST_LINE_START.fullmatch(data):
        return None
    return False


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    """Read up to the end of a head; None if the peer closed before sending anything."""
    try:
        return await reader.readuntil(HEAD_END)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadRequest(400, "connection closed inside the request head") from None
    except asyncio.LimitOverrunError:
        raise BadRequest(431, "request head too large") from None


async def read_next_head(
    reader: asyncio.StreamReader, buffered: bytes, max_bytes: int, idle: float, timeout: float
) -> bytes | None:
    """The next request of a kept-alive connection: its head and any bytes read after it.

    `buffered` holds what was already read past the previous request. The client has `idle`
    seconds to start the request, then `timeout` for the rest of its head. None: the client
    closed (or stayed silent) between two requests, which ends the connection normally.
    """
    data = buffered
    try:
        if not data.strip(b"\r\n"):
            async with asyncio.timeout(idle):
                data += await reader.read(CHUNK)
            if not data.strip(b"\r\n"):
                return None
        async with asyncio.timeout(timeout):
            while HEAD_END not in data:
                if len(data) > max_bytes:
                    raise BadRequest(431, "request head too large")
                more = await reader.read(CHUNK)
                if not more:
                    raise BadRequest(400, "connection closed inside the request head")
                data += more
    except TimeoutError:
        if data.strip(b"\r\n"):
            raise BadRequest(408, "request head not received in time") from None
        return None
    if data.index(HEAD_END) > max_bytes:
        raise BadRequest(431, "request head too large")
    return data


def _connection_named(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    """The field names a Connection header lists (besides the framing ones)."""
    named = {
        token.strip().lower()
        for key, value in headers
        if key.lower() == b"connection"
        for token in value.split(b",")
    }
    return named - {b"content-length", b"transfer-encoding"}


def _without_connection_fields(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Headers without those that manage this one connection (which the proxy manages now)."""
    drop = _connection_named(headers) | {b"connection", b"keep-alive", b"proxy-connection"}
    return [(k, v) for k, v in headers if k.lower() not in drop]


def _end_to_end(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Headers without the hop-by-hop ones (RFC 9110 7.6.1), those named in Connection included."""
    named = _connection_named(headers)
    return [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP and k.lower() not in named]


class Exchange:
    """One plain-HTTP request relayed to its origin, framed by h11 on both sides.

    The client's request head (already accepted by `parse_head`, possibly followed by bytes of
    its body or of the next request) is read again by an h11 server connection, whose events
    carry its body; the request goes to the origin through an h11 client connection (the
    proxy's own HTTP/1.1, hop-by-hop fields dropped, ``Connection: close``: one origin
    connection per request), and the origin's interim and final responses come back the same
    way. So every body is re-framed from what h11 read, never copied blind, and a response is
    read by the rules of the request that asked for it (HEAD, 204, 304, to EOF). ``up`` counts
    the bytes sent to the origin, ``down`` those sent to the client.

    `via_parent`: the origin connection goes to a parent proxy, whose 407 (it wants
    credentials this proxy does not have) becomes a 502 rather than a prompt for this proxy's.
    """

    def __init__(
        self, data: bytes, max_head_bytes: int, max_headers: int, *, via_parent: bool = False
    ) -> None:
        self.client = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_bytes)
        self.origin = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head_bytes)
        self.max_headers = max_headers
        self.max_head_bytes = max_head_bytes
        self.via_parent = via_parent
        self.up = Meter()
        self.down = Meter()
        self.client.receive_data(data.lstrip(b"\r\n"))
        try:
            request = self.client.next_event()
        except h11.RemoteProtocolError as exc:
            raise BadRequest(exc.error_status_hint, str(exc)) from None
        if not isinstance(request, h11.Request):
            raise BadRequest(400, "incomplete request head")
        self._request = request

    @property
    def keep_alive(self) -> bool:
        """Whether the client connection can carry another request (both sides are done and
        neither asked to close)."""
        return self.client.our_state is h11.DONE and self.client.their_state is h11.DONE

    @property
    def leftover(self) -> bytes:
        """Bytes the client sent after this request (the start of its next one)."""
        return self.client.trailing_data[0]

    def request_head(
        self,
        target: Target | None,
        *,
        absolute: bool = False,
        extra: Iterable[tuple[bytes, bytes]] = (),
    ) -> bytes:
        """The request head for the origin (the body follows with `send_body`).

        With a `target`, the request goes to it (its Host header and path; in absolute form
        for a parent proxy when `absolute`); without one, the request-target and Host header
        stay as the client sent them (a diverted connection, which has no proxy to address).
        `extra`: fields to add (the parent's ``Proxy-Authorization``).
        """
        fields = self._request.headers.raw_items()
        if target is None:
            line_target = self._request.target
            headers = [*_without_connection_fields(fields)]
        else:
            path = target.path.encode("latin-1")
            authority = target.http_authority.encode("latin-1")
            line_target = b"http://" + authority + path if absolute else path
            headers = [
                (b"Host", authority),
                *(h for h in _end_to_end(fields) if h[0].lower() != b"host"),
            ]
        headers += [*extra, (b"Connection", b"close")]
        request = h11.Request(method=self._request.method, target=line_target, headers=headers)
        return self._to_origin(request)

    def _to_origin(self, event: h11.Event) -> bytes:
        data = self.origin.send(event) or b""
        self.up.n += len(data)
        return data

    def _to_client(self, event: h11.Event) -> bytes:
        data = self.client.send(event) or b""
        self.down.n += len(data)
        return data

    async def send_body(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Relay the client's request body to the origin."""
        while True:
            try:
                event = self.client.next_event()
            except h11.RemoteProtocolError as exc:
                raise BadRequest(exc.error_status_hint, str(exc)) from None
            if event is h11.NEED_DATA:
                self.client.receive_data(await src.read(CHUNK))
            elif isinstance(event, h11.Data):
                dst.write(self._to_origin(h11.Data(data=event.data)))
                await dst.drain()
            elif isinstance(event, h11.EndOfMessage):
                dst.write(self._to_origin(h11.EndOfMessage(headers=event.headers)))
                await dst.drain()
                return
            else:
                raise BadRequest(400, "connection closed inside the request body")

    async def relay_response(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Relay the origin's interim and final responses and the final one's body."""
        # h11 bounds only a head still incomplete; one that arrived whole in a large read is
        # measured here, from the bytes read before the final response head.
        head_bytes = 0
        answered = False
        while True:
            try:
                event = self.origin.next_event()
            except h11.RemoteProtocolError:
                raise BadRequest(502, "malformed response from the origin") from None
            if event is h11.NEED_DATA:
                data = await src.read(CHUNK)
                self.origin.receive_data(data)
                head_bytes += 0 if answered else len(data)
                continue
            if isinstance(event, h11.InformationalResponse | h11.Response):
                if head_bytes - len(self.origin.trailing_data[0]) > self.max_head_bytes:
                    raise BadRequest(502, "response head too large")
                if len(event.headers) > self.max_headers:
                    raise BadRequest(502, "too many header fields in the response")
            if isinstance(event, h11.InformationalResponse):
                # An interim response (100 Continue): no body, more to come.
                with contextlib.suppress(h11.LocalProtocolError):  # not for HTTP/1.0 clients
                    dst.write(self._to_client(event))
            elif isinstance(event, h11.Response):
                answered = True
                if self.via_parent and event.status_code == 407:
                    raise BadRequest(
                        502, "the parent proxy asks for credentials (407): check its URL"
                    )
                headers = _end_to_end(event.headers.raw_items())
                if self.client.their_state is not h11.DONE:
                    # Answered before the request's body was all read: the rest of it cannot
                    # be told from a next request, so this is the connection's last answer.
                    headers.append((b"Connection", b"close"))
                response = h11.Response(
                    status_code=event.status_code, headers=headers, reason=event.reason
                )
                dst.write(self._to_client(response))
            elif isinstance(event, h11.Data):
                dst.write(self._to_client(h11.Data(data=event.data)))
                await dst.drain()
            elif isinstance(event, h11.EndOfMessage):
                try:
                    end = self._to_client(h11.EndOfMessage(headers=event.headers))
                except h11.LocalProtocolError:  # trailers the client's framing cannot carry
                    end = self._to_client(h11.EndOfMessage())
                dst.write(end)
                await dst.drain()
                return
            else:
                raise BadRequest(502, "the origin closed the connection without answering")


def _encode_head(start: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """A message head: the start line, the fields and the empty line."""
    lines = [start, *(f"{k}: {v}" for k, v in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1")


def response(
    status: int,
    body: bytes,
    content_type: str = "text/html; charset=utf-8",
    extra: Iterable[tuple[str, str]] = (),
) -> bytes:
    """A complete answer of the proxy's own (a page, an error), closing the connection."""
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("Connection", "close"),
        # The proxy's own pages (block, warn, errors) are never framed by another page: a
        # page that framed the warning could trick the user into clicking "Continue".
        ("Content-Security-Policy", "frame-ancestors 'none'"),
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        *extra,
    ]
    return _encode_head(f"HTTP/1.1 {status} {_REASONS[status]}", headers) + body


def error_response(status: int, detail: str) -> bytes:
    """The plain-text answer to a request the proxy refuses (`BadRequest`)."""
    body = f"{status} {_REASONS[status]}: {detail}\n".encode()
    return response(status, body, "text/plain; charset=utf-8")
