"""Prometheus metrics of the server and the daemon (one process-wide registry).

Served at ``/metrics`` by `enforcer serve` (admin token) and, for a daemon running on its own,
by ``enforcer daemon --metrics-listen HOST:PORT``. Store-derived figures (indicators by action)
are read at scrape time by `StoreCollector`, so they are right whichever process changed them.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from enforcer.store.feed import current_revision
from enforcer.store.lookup import indicator_counts

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILE_SECONDS = Histogram(
    "enforcer_reconcile_duration_seconds",
    "Time of one reconcile tick that planned (load policies, plan, apply).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
RECONCILE_TOTAL = Counter(
    "enforcer_reconcile_total",
    "Reconcile ticks by outcome (applied, no_changes, unchanged, policy_error, refused, "
    "store_error, standby).",
    ["outcome"],
    registry=REGISTRY,
)
PLAN_CHANGES = Gauge(
    "enforcer_last_plan_changes",
    "Size of the last applied plan, by change action (create, update, delete).",
    ["action"],
    registry=REGISTRY,
)
SYNC_WAITING = Gauge(
    "enforcer_sync_clients_waiting", "Devices holding a long-poll sync request.", registry=REGISTRY
)
SYNC_RENDERS = Counter(
    "enforcer_sync_renders_total",
    "Sync answer bodies rendered (snapshot, delta); each is sent to every device asking it.",
    ["kind"],
    registry=REGISTRY,
)
SYNC_CACHE_BYTES = Gauge(
    "enforcer_sync_cache_bytes",
    "Bytes of rendered sync answers the server keeps, in memory and in spill files.",
    ["where"],
    registry=REGISTRY,
)
EVENTS_INGESTED = Counter(
    "enforcer_events_ingested_total", "Network events stored from devices.", registry=REGISTRY
)
EVENTS_REJECTED = Counter(
    "enforcer_events_rejected_total",
    "Event batches refused, by reason (invalid, too_large, wrong_device, duplicate).",
    ["reason"],
    registry=REGISTRY,
)
SINK_OVERFLOW = Gauge(
    "enforcer_sink_overflow_indicators",
    "Indicators a sink's target had no room for at its last run (the Defender tenant limit).",
    ["sink"],
    registry=REGISTRY,
)
SINK_DRIFT = Gauge(
    "enforcer_sink_drift_entries",
    "Entries of a sink's target that differed from the store at the last check (0: in sync).",
    ["sink"],
    registry=REGISTRY,
)
SINK_CHECKS = Counter(
    "enforcer_sink_checks_total",
    "Sink checks by sink and outcome (in_sync, repaired, drift, error).",
    ["sink", "outcome"],
    registry=REGISTRY,
)


class StoreCollector(Collector):
    """Indicators by action and source, and the store's revision, read from the store at scrape."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        indicators = GaugeMetricFamily(
            "enforcer_indicators",
            "Indicators in the store by action and source.",
            labels=["action", "source"],
        )
        revision = GaugeMetricFamily("enforcer_store_revision", "The store's revision.")
        try:
            with self.engine.connect() as conn:
                rows = indicator_counts(conn)
                revision.add_metric([], current_revision(conn))
        except SQLAlchemyError:
            return
        for action, source, count in rows:
            indicators.add_metric([action, source], count)
        yield indicators
        yield revision
