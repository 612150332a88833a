"""hosts-file sink: ``0.0.0.0 name`` per blocked name, for resolvers that read hosts files.

A hosts file matches exact names only: it blocks ``example.com`` but not ``www.example.com``, and it
has no exceptions, so Allowed entries are not written. Use it where nothing better is available
(dnsmasq's ``addn-hosts``, which re-reads on SIGHUP, Pi-hole, a router); prefer the rpz or dnsmasq
sinks, which block subdomains too.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from enforcer.config import Settings
from enforcer.models import Indicator
from enforcer.sinks._files import FileSink
from enforcer.sinks.base import Ranking, SinkPlan, SinkResult

BLOCK_ADDRESS = "0.0.0.0"


class HostsSink(FileSink):
    """The hosts format (see the module docstring)."""

    def path(self, settings: Settings) -> Path | None:
        return settings.hosts_path

    def reload_command(self, settings: Settings) -> str:
        return settings.hosts_reload_command

    def record(self, kind: str, settings: Settings) -> str:
        return BLOCK_ADDRESS

    def lines(self, name: str, kind: str, record: str) -> str:
        return f"{BLOCK_ADDRESS} {name}\n"

    def parse(self, line: str) -> tuple[str, str] | None:
        parts = line.split()
        if len(parts) != 2 or parts[0].startswith("#"):
            return None
        return parts[1], parts[0]


SINK = HostsSink(name="hosts", comment="#", passthru=False)


def plan(
    desired: Iterable[Indicator],
    revision: int,
    settings: Settings,
    *,
    ranking: Ranking | None = None,
) -> SinkPlan:
    """The changes to the hosts file at `revision` (no size limit: `ranking` is unused)."""
    return SINK.plan(desired, revision, settings)


def apply(plan: SinkPlan, settings: Settings) -> SinkResult:
    """Write the hosts file atomically, then run ``hosts_reload_command`` if one is set."""
    return SINK.apply(plan, settings)
