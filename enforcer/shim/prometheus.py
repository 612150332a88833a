"""Prometheus metrics of a running shim: DNS queries, blocks, cache hits, spool depth.

Read from the front ends' own counters at scrape time (no per-query metric calls on the hot
path), served on a loopback address given by ``enforcer shim --metrics-listen``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from enforcer.shim.agent import Agent

_DNS_COUNTERS = (
    "queries",
    "blocked",
    "cache_hits",
    "forwarded",
    "malformed",
    "upstream_errors",
    "refused",
    "alias_blocked",
    "upstream_busy",
)


class ShimCollector(Collector):
    """Turns an `Agent`'s counters into Prometheus families at each scrape."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        agent = self.agent
        if agent.dns is not None:
            counters = agent.dns.counters
            for name in _DNS_COUNTERS:
                if name in counters:
                    family = CounterMetricFamily(
                        f"enforcer_shim_dns_{name}", f"DNS front end: {name.replace('_', ' ')}."
                    )
                    family.add_metric([], counters[name])
                    yield family
        indicators = GaugeMetricFamily("enforcer_shim_indicators", "Domains in the shim's matcher.")
        indicators.add_metric([], len(agent.matcher))
        yield indicators
        if agent.reporter is not None:
            stats = agent.reporter.stats
            depth = GaugeMetricFamily("enforcer_shim_spool_depth", "Events waiting in the spool.")
            depth.add_metric([], stats.get("pending", 0))
            yield depth
            for name in ("sent", "dropped", "errors", "lost", "journal_errors"):
                family = CounterMetricFamily(
                    f"enforcer_shim_events_{name}", f"Events {name} by the reporter."
                )
                family.add_metric([], stats.get(name, 0))
                yield family
        degraded = GaugeMetricFamily(
            "enforcer_shim_state_degraded",
            "1 for each state file the disk did not let the shim keep as usual (part: cache, "
            "spool, journal; condition: read_only, damaged, memory, unavailable).",
            labels=["part", "condition"],
        )
        for part, condition in agent.degraded.items():
            degraded.add_metric([part, condition], 1)
        yield degraded
        sync = agent.sync
        if sync is not None:
            errors = CounterMetricFamily(
                "enforcer_shim_cache_write_errors",
                "Indicator updates the on-disk cache could not take (full or read-only disk).",
            )
            errors.add_metric([], sync.cache_errors)
            yield errors
            behind = GaugeMetricFamily(
                "enforcer_shim_cache_behind",
                "1 while the on-disk cache is behind memory after a failed write (enforcing "
                "from memory), else 0.",
            )
            behind.add_metric([], 0 if sync.cache_behind_since is None else 1)
            yield behind
