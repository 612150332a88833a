"""Which clients the shim's DNS and proxy listeners serve.

On a loopback address only this host's programs reach them, and nothing is checked. On any
other address (``--dns-listen 0.0.0.0:53``: a gateway for local VMs and containers, a lab) other
hosts reach them too, and an open resolver is used for reflection attacks and an open proxy
to hide where traffic comes from. Such a listener serves only clients in its allowed networks
(``--allow-clients``, ``ENFORCER_SHIM_ALLOW_CLIENTS``), and loopback, and refuses the rest: the
resolver answers REFUSED, the proxy 403 before reading anything. The default is loopback and
the private networks (RFC 1918, IPv4 and IPv6 link-local, IPv6 unique-local), the set
Squid's default ``localnet`` ACL allows: what a gateway on a private
network needs, and no host of the internet. At start each such listener logs a warning naming
what it serves, and calls itself an open resolver or proxy when a network is ``0.0.0.0/0`` or
``::/0``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

import structlog

log = structlog.get_logger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

PRIVATE_NETWORKS = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
)
"""Clients a listener beyond loopback serves when it is not told otherwise."""

LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
"""Always served: this host's own programs."""

_REMEMBERED = 4096
"""Client addresses whose answer is remembered (cleared when full)."""


def parse_networks(items: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Networks from CIDR texts (``10.0.0.0/8``; a bare address is one host), or a ValueError
    naming the first item that is not one."""
    networks = []
    for item in items:
        text = item.strip()
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an address or network (CIDR)") from None
    return tuple(networks)


def split_networks(text: str) -> list[str]:
    """``"10.0.0.0/8, 192.168.0.0/16"`` as a list of its items (empty items dropped)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def is_loopback(host: str) -> bool:
    """Whether a listen address is reachable from this host only (a name other than
    ``localhost`` counts as not: it may resolve to anything)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ClientFilter:
    """The clients one listener serves: loopback and `networks`.

    `allows` runs once per DNS query of a listener beyond loopback, so its answer for each
    address is remembered; `refused` counts the refusals.
    """

    def __init__(self, networks: Sequence[IPNetwork], what: str) -> None:
        self.networks = tuple(networks)
        self.what = what
        """"dns" or "proxy": names the listener in log lines."""
        self._all = self.networks + parse_networks(LOOPBACK_NETWORKS)
        self._known: dict[str, bool] = {}
        self.refused = 0

    @property
    def is_open(self) -> bool:
        """Whether every IPv4 or every IPv6 address is allowed."""
        return any(net.prefixlen == 0 for net in self.networks)

    def allows(self, address: str) -> bool:
        """Whether the client at `address` (as a socket reports it) is served."""
        known = self._known.get(address)
        if known is None:
            known = self._check(address)
            if len(self._known) >= _REMEMBERED:
                self._known.clear()
            self._known[address] = known
            if not known:
                log.info(f"{self.what}.client_refused", client=address)
        if not known:
            self.refused += 1
        return known

    def _check(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])  # fe80::1%eth0
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack socket's IPv4 client
        return any(ip in net for net in self._all if net.version == ip.version)


def for_listener(
    what: str, host: str, port: int, allow: Sequence[str] | None
) -> ClientFilter | None:
    """The filter of a listener on (host, port), after logging what it serves; None for a
    loopback listener that was given no list (only this host reaches it).

    `what`: "dns" or "proxy". `allow`: the networks served besides loopback (None: the
    private networks). ValueError for an item that is not a network.
    """
    networks = parse_networks(PRIVATE_NETWORKS if allow is None else allow)
    if is_loopback(host) and allow is None:
        return None
    clients = ClientFilter(networks, what)
    if not is_loopback(host):
        kind = "resolver" if what == "dns" else "proxy"
        served = [str(net) for net in networks]
        if clients.is_open:
            log.warning(
                f"{what}.open_{kind}",
                address=f"{host}:{port}",
                allowed_clients=served,
                detail=f"any host that reaches this address can use this {kind}: an open "
                f"{kind}. Narrow --allow-clients to the networks that need it",
            )
        else:
            log.warning(
                f"{what}.listening_beyond_loopback",
                address=f"{host}:{port}",
                allowed_clients=[*served, *LOOPBACK_NETWORKS],
                detail=f"other hosts can reach this {kind}; clients outside allowed_clients "
                "are refused (--allow-clients)",
            )
    return clients
