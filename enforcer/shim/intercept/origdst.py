"""Where a diverted TCP connection was going: the destination before nftables' ``redirect``.

The kernel's connection tracking remembers the original destination of a NATed connection and
hands it out with ``getsockopt(SOL_IP, SO_ORIGINAL_DST)`` (a ``sockaddr_in``) on IPv4, or
``getsockopt(SOL_IPV6 = IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST)`` (a ``sockaddr_in6``) on IPv6; both options are 80.
"""

from __future__ import annotations

import ipaddress
import socket

SO_ORIGINAL_DST = 80
"""Linux ``SO_ORIGINAL_DST`` (IPv4) and ``IP6T_SO_ORIGINAL_DST`` (IPv6) share this number."""
_SOCKADDR_IN = 16
_SOCKADDR_IN6 = 28


def original_destination(sock: socket.socket) -> tuple[str, int]:
    """(address, port) the client connected to before the redirect; `OSError` when the
    connection was not redirected (no conntrack entry)."""
    if sock.family == socket.AF_INET6:
        raw = sock.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, _SOCKADDR_IN6)
        address = ipaddress.IPv6Address(raw[8:24])
        # A v4-mapped destination (a dual-stack socket) is shown as the IPv4 address.
        host = str(address.ipv4_mapped or address)
    else:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, _SOCKADDR_IN)
        host = socket.inet_ntoa(raw[4:8])
    return host, int.from_bytes(raw[2:4], "big")
