"""Response Policy Zone file sink (draft-vixie-dnsop-dns-rpz), for Unbound, BIND, Knot Resolver.

A blocked name gets ``name CNAME .`` and ``*.name CNAME .`` (NXDOMAIN for it and its subdomains),
or, with ``rpz_redirect_ip`` set, ``A``/``AAAA`` local data pointing at the block page. An allowed
name under a blocked parent gets ``CNAME rpz-passthru.`` so that the exception resolves. The SOA
serial is the store revision, so a resolver (or a zone transfer) sees which revision it enforces.

Owner names are written relative to the zone (no trailing dot): the resolver's ``rpz:`` clause
names the zone, so the same file works whatever that name is.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from pathlib import Path

from enforcer.config import Settings
from enforcer.models import Indicator
from enforcer.sinks._files import BLOCK, FileSink
from enforcer.sinks.base import Ranking, SinkError, SinkPlan, SinkResult

NXDOMAIN = "CNAME ."
PASSTHRU = "CNAME rpz-passthru."
_NOT_ENTRY = frozenset("*@$; \t\n")


def _redirect(settings: Settings) -> str:
    """The record of a blocked name: NXDOMAIN, or local data pointing at the block page."""
    if not settings.rpz_redirect_ip:
        return NXDOMAIN
    try:
        address = ipaddress.ip_address(settings.rpz_redirect_ip)
    except ValueError as exc:
        raise SinkError(f"sink rpz: ENFORCER_RPZ_REDIRECT_IP: {exc}") from exc
    return f"{'A' if address.version == 4 else 'AAAA'} {address}"


class RpzSink(FileSink):
    """The zone file format (see the module docstring)."""

    def path(self, settings: Settings) -> Path | None:
        return settings.rpz_path

    def reload_command(self, settings: Settings) -> str:
        return settings.rpz_reload_command

    def preamble(self, revision: int, settings: Settings) -> Iterator[str]:
        yield "$TTL 60\n"
        # serial refresh retry expire minimum: the serial is the store revision.
        yield f"@ SOA localhost. hostmaster.localhost. {revision} 3600 600 86400 60\n"
        yield "@ NS localhost.\n"

    def record(self, kind: str, settings: Settings) -> str:
        return _redirect(settings) if kind == BLOCK else PASSTHRU

    def lines(self, name: str, kind: str, record: str) -> str:
        return f"{name} {record}\n*.{name} {record}\n"

    def parse(self, line: str) -> tuple[str, str] | None:
        # The wildcard line of each name repeats its record: skip it before splitting.
        if not line or line[0] in _NOT_ENTRY:
            return None
        parts = line.split(None, 1)
        return (parts[0], parts[1].strip()) if len(parts) == 2 else None


SINK = RpzSink(name="rpz", comment=";", passthru=True)


def plan(
    desired: Iterable[Indicator],
    revision: int,
    settings: Settings,
    *,
    ranking: Ranking | None = None,
) -> SinkPlan:
    """The changes to the zone file at `revision` (no size limit: `ranking` is unused)."""
    _redirect(settings)  # a bad redirect address is refused at plan time, not half-way through
    return SINK.plan(desired, revision, settings)


def apply(plan: SinkPlan, settings: Settings) -> SinkResult:
    """Write the zone atomically, then run ``rpz_reload_command`` if one is set."""
    return SINK.apply(plan, settings)
