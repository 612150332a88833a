"""The socket mark that exempts the shim's own traffic from its nftables diversion.

Every socket the shim opens towards the network while intercepting (upstream DNS, relayed
connections, the sync and event client) carries ``SO_MARK`` = `MARK`; the table's chains start
with ``meta mark MARK return``, so that traffic leaves untouched instead of being diverted back
into the shim. Setting a mark needs CAP_NET_ADMIN, which interception needs anyway.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

MARK = 0x2A
"""The mark of the shim's own sockets (42)."""


def set_mark(sock: socket.socket, mark: int) -> None:
    """Mark `sock` (0: leave it unmarked)."""
    if mark:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)


async def open_marked_connection(
    host: str, port: int, mark: int, *, limit: int = 64 * 1024
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """`asyncio.open_connection` from a socket carrying `mark` (resolving `host` if needed)."""
    loop = asyncio.get_running_loop()
    targets: list[tuple[socket.AddressFamily, Any]]
    try:  # an address (a diverted connection's destination) needs no resolver thread
        version = ipaddress.ip_address(host).version
        targets = [(socket.AF_INET6 if version == 6 else socket.AF_INET, (host, port))]
    except ValueError:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        targets = [(info[0], info[4]) for info in infos]
    error: OSError | None = None
    for family, address in targets:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            set_mark(sock, mark)
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock, limit=limit)
    raise error or OSError(f"cannot resolve {host}")
