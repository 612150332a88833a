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


_OVERRUN = "length field overruns its container"


def _u16(data: bytes, pos: int, end: int) -> int:
    """The big-endian 16-bit number at `pos`, which must end by `end`."""
    if pos + 2 > end:
        raise ParseError(_OVERRUN)
    return (data[pos] << 8) | data[pos + 1]


def _parse_hello(body: bytes) -> str | None:
    """The SNI host name of a ClientHello message body (after its 4-byte header).

    Every length is checked against the bytes of its container before it is used. Written with
    plain offsets rather than a cursor object: this runs once per intercepted TLS connection.
    """
    end = len(body)
    if end < 1 or body[0] != 3:
        raise ParseError("ClientHello version is not TLS")
    pos = 1 + 1 + 32  # version major, minor, random
    if pos + 1 > end:
        raise ParseError(_OVERRUN)
    session_id = body[pos]
    if session_id > 32:
        raise ParseError("session id longer than 32 bytes")
    pos += 1 + session_id
    suites = _u16(body, pos, end)
    if suites < 2 or suites % 2:
        raise ParseError("bad cipher suites length")
    pos += 2 + suites
    if pos + 1 > end:
        raise ParseError(_OVERRUN)
    compression = body[pos]
    if compression < 1:
        raise ParseError("no compression method")
    pos += 1 + compression
    if pos > end:
        raise ParseError(_OVERRUN)
    if pos == end:
        return None  # no extensions at all (old clients)
    extensions_end = pos + 2 + _u16(body, pos, end)
    if extensions_end > end:
        raise ParseError(_OVERRUN)
    if extensions_end != end:
        raise ParseError("bytes after the extensions")
    pos += 2
    name: str | None = None
    seen: set[int] = set()
    while pos < end:
        if pos + 4 > end:
            raise ParseError(_OVERRUN)
        ext_type = (body[pos] << 8) | body[pos + 1]
        ext_end = pos + 4 + ((body[pos + 2] << 8) | body[pos + 3])
        if ext_end > end:
            raise ParseError(_OVERRUN)
        if ext_type in seen:
            raise ParseError(f"duplicate extension {ext_type}")
        seen.add(ext_type)
        if ext_type == _EXT_SERVER_NAME:
            name = _parse_server_name(body, pos + 4, ext_end)
        pos = ext_end
    return name


def _parse_server_name(data: bytes, pos: int, end: int) -> str | None:
    """The first ``host_name`` of a ``server_name`` extension's body at data[pos:end]."""
    names_end = pos + 2 + _u16(data, pos, end)
    if names_end > end:
        raise ParseError(_OVERRUN)
    if names_end != end:
        raise ParseError("bytes after the server name list")
    pos += 2
    host: str | None = None
    while pos < end:
        if pos + 1 > end:
            raise ParseError(_OVERRUN)
        name_type = data[pos]
        entry_end = pos + 3 + _u16(data, pos + 1, end)
        if entry_end > end:
            raise ParseError(_OVERRUN)
        if name_type == _NAME_TYPE_HOST and host is None:
            raw = data[pos + 3 : entry_end]
            if not raw or len(raw) > DOMAIN_MAX or not _HOST_CHARS.issuperset(raw):
                raise ParseError("server name is not a host name")
            host = raw.decode("ascii").lower()
        pos = entry_end
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
