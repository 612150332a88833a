"""A parent proxy: the corporate proxy that allowed traffic leaves through.

Devices behind a corporate proxy cannot reach the internet directly. With ``--parent-proxy
http://[user:password@]host:port`` the shim still decides every connection itself, then relays
what it allows through that proxy: tunnels (CONNECT, and TLS or unnamed connections of the
transparent listener) as a ``CONNECT host:port`` to the parent, plain-HTTP requests in absolute
form. Credentials in the URL are sent as ``Proxy-Authorization: Basic`` and never shown: the
parent's `repr` and every message name it by ``host:port`` only.

A parent that refuses a tunnel (407 wants credentials, 403 forbids, 502/504 could not reach
the target) raises `ParentRefused`, a `BadRequest` whose status and text tell the client what
happened without asking it for credentials of its own.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from enforcer.shim.proxy.http1 import HEAD_END, BadRequest, Target, parse_host

StreamPair = tuple[asyncio.StreamReader, asyncio.StreamWriter]
_PASSED_ON = frozenset({403, 504})
"""Refusals answered to the client with the parent's own status; any other becomes a 502."""


class ParentRefused(BadRequest):
    """The parent proxy answered a CONNECT with something other than 2xx."""

    def __init__(self, parent: str, target: str, status_line: str, status: int) -> None:
        detail = f"the parent proxy {parent} refused CONNECT {target}: {status_line}"
        super().__init__(status if status in _PASSED_ON else 502, detail)
        self.parent_status = status


@dataclass(frozen=True, slots=True)
class ParentProxy:
    """Where allowed traffic goes on, and the credentials it takes (never shown)."""

    host: str
    port: int
    authorization: bytes | None = field(default=None, repr=False)
    """The ``Proxy-Authorization`` value (``Basic ...``), from the URL's user information."""

    @classmethod
    def parse(cls, url: str) -> ParentProxy:
        """Read ``http://[user[:password]@]host[:port]`` (port 3128 when absent).

        Raises `ValueError` saying what is wrong, without repeating the credentials.
        """
        parts = urlsplit(url.strip())
        if parts.scheme != "http":
            raise ValueError("parent proxy: the URL must start with http:// (the hop is plain)")
        name = parts.hostname or ""
        try:
            host = parse_host(f"[{name}]" if ":" in name else name)
            port = parts.port or 3128
        except (BadRequest, ValueError):
            raise ValueError("parent proxy: bad host or port in the URL") from None
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("parent proxy: the URL has no path, only http://host:port")
        authorization = None
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = b"Basic " + base64.b64encode(credentials.encode())
        return cls(host, port, authorization)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def authority(self) -> str:
        """``host:port``, the name used in messages and logs."""
        return Target(self.host, self.port).authority

    @property
    def url(self) -> str:
        """The URL with its credentials, for an HTTP client library (never log it)."""
        if self.authorization is None:
            return f"http://{self.authority}"
        userinfo = base64.b64decode(self.authorization.removeprefix(b"Basic ")).decode()
        user, _, password = userinfo.partition(":")
        return f"http://{quote(user, safe='')}:{quote(password, safe='')}@{self.authority}"

    def headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """Fields every request to the parent carries."""
        if self.authorization is None:
            return ()
        return ((b"Proxy-Authorization", self.authorization),)

    async def tunnel(
        self, connect: Callable[[str, int], Awaitable[StreamPair]], target: Target
    ) -> StreamPair:
        """A connection to the parent on which it has accepted ``CONNECT target``."""
        reader, writer = await connect(self.host, self.port)
        authority = target.authority.encode("latin-1")
        lines = [b"CONNECT " + authority + b" HTTP/1.1", b"Host: " + authority]
        lines += [name + b": " + value for name, value in self.headers()]
        writer.write(b"\r\n".join(lines) + HEAD_END)
        try:
            head = await _read_response_head(reader)
        except BaseException:
            writer.close()
            raise
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if not 200 <= status < 300:
            writer.close()
            raise ParentRefused(self.authority, target.authority, status_line, status)
        return reader, writer


async def _read_response_head(reader: asyncio.StreamReader) -> bytes:
    """The parent's answer head to a CONNECT (its body, if any, is not read: the connection
    is closed on a refusal)."""
    try:
        return await reader.readuntil(HEAD_END)
    except asyncio.IncompleteReadError:
        raise OSError("the parent proxy closed the connection without answering") from None
    except asyncio.LimitOverrunError:
        raise OSError("the parent proxy answered with an oversized head") from None
