"""dnsmasq sink: ``address=/name/0.0.0.0`` per blocked name (the name and all its subdomains).

An allowed name under a blocked parent gets ``server=/name/#`` ("use the usual upstream servers"),
which dnsmasq prefers to the parent's ``address=`` line because the more specific domain wins.
dnsmasq reads these lines only at start: give ``dnsmasq_reload_command`` a restart command
(``systemctl restart dnsmasq``); SIGHUP re-reads hosts files, not ``conf-file``/``conf-dir``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from enforcer.config import Settings
from enforcer.models import Indicator
from enforcer.sinks._files import BLOCK, FileSink
from enforcer.sinks.base import Ranking, SinkPlan, SinkResult

BLOCK_ADDRESS = "0.0.0.0"
_PASSTHRU = "#"


class DnsmasqSink(FileSink):
    """The dnsmasq configuration format (see the module docstring)."""

    def path(self, settings: Settings) -> Path | None:
        return settings.dnsmasq_path

    def reload_command(self, settings: Settings) -> str:
        return settings.dnsmasq_reload_command

    def record(self, kind: str, settings: Settings) -> str:
        return f"address {BLOCK_ADDRESS}" if kind == BLOCK else f"server {_PASSTHRU}"

    def lines(self, name: str, kind: str, record: str) -> str:
        if kind == BLOCK:
            return f"address=/{name}/{BLOCK_ADDRESS}\n"
        return f"server=/{name}/{_PASSTHRU}\n"

    def parse(self, line: str) -> tuple[str, str] | None:
        key, sep, rest = line.strip().partition("=/")
        if not sep or key not in ("address", "server"):
            return None
        name, _, value = rest.partition("/")
        return name, f"{key} {value}"


SINK = DnsmasqSink(name="dnsmasq", comment="#", passthru=True)


def plan(
    desired: Iterable[Indicator],
    revision: int,
    settings: Settings,
    *,
    ranking: Ranking | None = None,
) -> SinkPlan:
    """The changes to the dnsmasq file at `revision` (no size limit: `ranking` is unused)."""
    return SINK.plan(desired, revision, settings)


def apply(plan: SinkPlan, settings: Settings) -> SinkResult:
    """Write the dnsmasq file atomically, then run ``dnsmasq_reload_command`` if one is set."""
    return SINK.apply(plan, settings)
