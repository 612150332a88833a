"""Read the server name (SNI) from the first bytes a TLS client sends, without decrypting anything.

The proxy front end uses it after a CONNECT: the CONNECT target and the name the client asks the
TLS server for can differ (domain fronting), so both are checked against the indicators.

The parser is strict and bounds-checked: it reads TLS plaintext records of type handshake (22),
joins their fragments (a ClientHello may span several records), then walks the ClientHello up to
its extensions and returns the first ``host_name`` entry of the ``server_name`` extension
(RFC 6066 section 3). It never raises anything but `ParseError` (the bytes are not a well-formed
ClientHello, or it is larger than `MAX_CLIENT_HELLO`) and its subclass `NeedMoreData` (the bytes
are a valid prefix: read more and call again). With Encrypted Client Hello only the outer,
public name is visible; that is the name the network sees, and the one that is checked.

`read_first_bytes` reads a client's first bytes off a stream, up to a whole ClientHello when they
start one, and `ACCESS_DENIED` is the TLS alert that refuses a connection whose name is denied.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from enforcer.wire.limits import DOMAIN_MAX

RECORD_HANDSHAKE = 0x16
"""First byte of a TLS handshake record: what a ClientHello starts with."""
_HANDSHAKE_CLIENT_HELLO = 1
_EXT_SERVER_NAME = 0
_NAME_TYPE_HOST = 0
_RECORD_HEADER = 5
_MAX_RECORD = 1 << 14
MAX_CLIENT_HELLO = 1 << 16
"""Largest ClientHello message (bytes, without record headers) the reader accepts."""
_HOST_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")
_CHUNK = 64 * 1024
ACCESS_DENIED = b"\x15\x03\x01\x00\x02\x02\x31"
"""TLS alert record: level fatal (2), description access_denied (49). A browser shows a clear
error for it instead of a generic connection reset."""


class ParseError(ValueError):
    """The bytes are not a ClientHello this reader accepts; the proxy denies the connection."""


class NeedMoreData(ParseError):
    """The bytes are a valid beginning of a ClientHello: read more and call again."""


def looks_like_tls(first: bytes) -> bool:
    """Whether a stream starting with these bytes is a TLS handshake (the cheap first check)."""
    return bool(first) and first[0] == RECORD_HANDSHAKE


def server_name(data: bytes) -> str | None:
    """Return the lower-case SNI host name of the ClientHello at the start of `data`, or None.

    None means a complete, well-formed ClientHello without a host name (clients omit it for IP
    addresses). Raises `NeedMoreData` when `data` is a valid but incomplete prefix and
    `ParseError` when it is malformed or too large.
    """
    return _parse_hello(_handshake_message(data))


def _handshake_message(data: bytes) -> bytes:
    """Join the handshake records' fragments into the whole ClientHello message body."""
    message = bytearray()
    need = -1  # handshake message length, known once its 4-byte header is in
    pos = 0
    while need < 0 or len(message) < need:
        if len(data) - pos < _RECORD_HEADER:
            raise NeedMoreData("record header")
        if data[pos] != RECORD_HANDSHAKE:
            raise ParseError(f"record type {data[pos]} is not handshake")
        if data[pos + 1] != 3:
            raise ParseError("record version is not TLS")
        length = (data[pos + 3] << 8) | data[pos + 4]
        if length == 0 or length > _MAX_RECORD:
            raise ParseError(f"record length {length}")
        pos += _RECORD_HEADER
        fragment = data[pos : pos + length]
        pos += length
        message += fragment
        if need < 0 and len(message) >= 4:
            if message[0] != _HANDSHAKE_CLIENT_HELLO:
                raise ParseError(f"handshake type {message[0]} is not ClientHello")
            need = 4 + ((message[1] << 16) | (message[2] << 8) | message[3])
            if need > MAX_CLIENT_HELLO:
                raise ParseError(f"ClientHello of {need} bytes is too large")
        if len(fragment) < length:
            raise NeedMoreData("record body")
    if len(message) > need:
        # Another handshake message after the ClientHello in the same flight: not from a client.
        raise ParseError("trailing handshake data after ClientHello")
    return bytes(message[4:])


class _Cursor:
    """A read position in a byte string; every read is bounds-checked against `end`."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int, end: int) -> None:
        self.buf, self.pos, self.end = buf, pos, end

    def take(self, n: int) -> int:
        """Advance by n bytes and return the position before, or raise if they are not there."""
        start = self.pos
        if n > self.end - start:
            raise ParseError("length field overruns its container")
        self.pos = start + n
        return start

    def u8(self) -> int:
        return self.buf[self.take(1)]

    def u16(self) -> int:
        at = self.take(2)
        return (self.buf[at] << 8) | self.buf[at + 1]

    def vector(self, length: int) -> _Cursor:
        """A cursor over the next `length` bytes, consumed from this one."""
        start = self.take(length)
        return _Cursor(self.buf, start, start + length)


def _parse_hello(body: bytes) -> str | None:
    hello = _Cursor(body, 0, len(body))
    if hello.u8() != 3:
        raise ParseError("ClientHello version is not TLS")
    hello.take(1 + 32)  # version minor, random
    session_id = hello.u8()
    if session_id > 32:
        raise ParseError("session id longer than 32 bytes")
    hello.take(session_id)
    suites = hello.u16()
    if suites < 2 or suites % 2:
        raise ParseError("bad cipher suites length")
    hello.take(suites)
    compression = hello.u8()
    if compression < 1:
        raise ParseError("no compression method")
    hello.take(compression)
    if hello.pos == hello.end:
        return None  # no extensions at all (old clients)
    extensions = hello.vector(hello.u16())
    if hello.pos != hello.end:
        raise ParseError("bytes after the extensions")
    name: str | None = None
    seen: set[int] = set()
    while extensions.pos < extensions.end:
        ext_type = extensions.u16()
        ext = extensions.vector(extensions.u16())
        if ext_type in seen:
            raise ParseError(f"duplicate extension {ext_type}")
        seen.add(ext_type)
        if ext_type == _EXT_SERVER_NAME:
            name = _parse_server_name(ext)
    return name


def _parse_server_name(ext: _Cursor) -> str | None:
    names = ext.vector(ext.u16())
    if ext.pos != ext.end:
        raise ParseError("bytes after the server name list")
    host: str | None = None
    while names.pos < names.end:
        name_type = names.u8()
        entry = names.vector(names.u16())
        if name_type != _NAME_TYPE_HOST or host is not None:
            continue
        raw = entry.buf[entry.pos : entry.end]
        if not raw or len(raw) > DOMAIN_MAX or not _HOST_CHARS.issuperset(raw):
            raise ParseError("server name is not a host name")
        host = raw.decode("ascii").lower()
    return host


class FirstBytes(NamedTuple):
    """What a client sent first, and the server name read from it if it is TLS."""

    data: bytes
    tls: bool = False
    server_name: str | None = None
    error: str = ""
    """Why the bytes, which start like TLS, are not a readable ClientHello."""


async def read_first_bytes(
    reader: asyncio.StreamReader, first_timeout: float, hello_timeout: float
) -> FirstBytes:
    """A client's first bytes (a whole ClientHello if they start one; b"" at EOF).

    The wait for the first bytes is bounded by `first_timeout` (raises TimeoutError), the wait
    for the rest of a ClientHello by `hello_timeout` from the first bytes on.
    """
    async with asyncio.timeout(first_timeout) as deadline:
        data = await reader.read(_CHUNK)
        if not looks_like_tls(data):
            return FirstBytes(data)
        deadline.reschedule(asyncio.get_running_loop().time() + hello_timeout)
        while True:
            try:
                return FirstBytes(data, tls=True, server_name=server_name(data))
            except NeedMoreData as exc:
                more = await reader.read(_CHUNK)
                if not more or len(data) > MAX_CLIENT_HELLO + 1024:
                    return FirstBytes(data, tls=True, error=str(exc))
                data += more
            except ParseError as exc:
                return FirstBytes(data, tls=True, error=str(exc))
