"""HTTP/1.1 framing for the proxy: request heads, targets, message bodies and fixed responses.

Everything here works on bytes and streams and knows nothing of verdicts:

* `parse_head` reads a request head (request line, header fields) strictly: a malformed head, a
  version other than HTTP/1.0 or 1.1, control characters in a value, or a body two parties could
  frame differently (both Content-Length and Transfer-Encoding, a coding other than chunked:
  request smuggling) raise `BadRequest` with the status to answer. `parse_authority`,
  `parse_absolute` and `parse_host` read the request target and Host header into a `Target`.
* `read_head` reads a head off a stream (the stream's limit bounds its size: 431);
  `copy_body` copies a message body framed by its headers (Content-Length, chunked, or to EOF),
  counting bytes in a `Meter`; `forward_headers` drops the hop-by-hop fields;
  `split_head` and `encode_head` read and write a start line and fields.
* `response` and `error_response` build the proxy's own complete answers
  (``Connection: close``: one request per client connection).

These functions raise only `BadRequest` on bad input (a hypothesis test checks the parsers).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from enforcer.shim.proxy.relay import CHUNK, Meter, copy_to_eof

_CRLF = b"\r\n"
HEAD_END = b"\r\n\r\n"
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


def split_head(data: bytes, max_headers: int) -> tuple[str, tuple[tuple[str, str], ...]]:
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
    start, headers = split_head(data, max_headers)
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


async def _copy_exactly(
    src: asyncio.StreamReader, dst: asyncio.StreamWriter, size: int, meter: Meter
) -> None:
    left = size
    while left:
        data = await src.read(min(left, CHUNK))
        if not data:
            raise asyncio.IncompleteReadError(b"", left)
        dst.write(data)
        meter.n += len(data)
        await dst.drain()
        left -= len(data)


async def _copy_line(src: asyncio.StreamReader, dst: asyncio.StreamWriter, meter: Meter) -> bytes:
    line = await src.readuntil(_CRLF)
    dst.write(line)
    meter.n += len(line)
    return line


async def _copy_chunked(src: asyncio.StreamReader, dst: asyncio.StreamWriter, meter: Meter) -> None:
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


async def copy_body(
    src: asyncio.StreamReader,
    dst: asyncio.StreamWriter,
    headers: Iterable[tuple[str, str]],
    meter: Meter,
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
        await copy_to_eof(src, dst, meter)


def forward_headers(
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


def encode_head(start: str, headers: Iterable[tuple[str, str]]) -> bytes:
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
        *extra,
    ]
    return encode_head(f"HTTP/1.1 {status} {_REASONS[status]}", headers) + body


def error_response(status: int, detail: str) -> bytes:
    """The plain-text answer to a request the proxy refuses (`BadRequest`)."""
    body = f"{status} {_REASONS[status]}: {detail}\n".encode()
    return response(status, body, "text/plain; charset=utf-8")
