"""Sinks: the store's indicator set pushed to enforcement points Enforcer does not run itself.

One module per sink, each with ``plan(desired, revision, settings) -> SinkPlan`` and
``apply(plan, settings) -> SinkResult`` (see `enforcer.sinks.base`); `SINKS` names them.
Adding a sink is one module and one line in `SINKS`.

The daemon calls `run_sinks` after each apply; the CLI previews one sink with `plan_sink`.
"""

from __future__ import annotations

from sqlalchemy import Engine

from enforcer.config import Settings
from enforcer.errors import EnforcerError, TemporaryError
from enforcer.logs import get_logger
from enforcer.models import ALL_DEVICES, Indicator
from enforcer.sinks import defender, dnsmasq, hosts, rpz
from enforcer.sinks.base import Sink, SinkChange, SinkError, SinkPlan, SinkResult
from enforcer.store.indicators import current_revision, iter_indicators

__all__ = [
    "SINKS",
    "Sink",
    "SinkChange",
    "SinkError",
    "SinkPlan",
    "SinkResult",
    "get_sink",
    "plan_sink",
    "read_desired",
    "run_sinks",
]

SINKS: dict[str, Sink] = {
    "rpz": rpz,
    "hosts": hosts,
    "dnsmasq": dnsmasq,
    "defender": defender,
}

log = get_logger(__name__)


def get_sink(name: str) -> Sink:
    """The sink module called `name`, or a `SinkError` listing the known ones."""
    try:
        return SINKS[name]
    except KeyError:
        raise SinkError(f"unknown sink {name!r}; known sinks: {', '.join(SINKS)}") from None


def read_desired(engine: Engine) -> tuple[list[Indicator], int]:
    """The store's device-wide indicators (policy and manual) and its revision, read together."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # One snapshot for the rows and the revision they belong to.
            conn.execution_options(isolation_level="REPEATABLE READ")
        revision = current_revision(conn)
        indicators = [
            stored.indicator
            for stored in iter_indicators(conn)
            if stored.indicator.scope == ALL_DEVICES
        ]
    return indicators, revision


def plan_sink(name: str, settings: Settings, engine: Engine) -> SinkPlan:
    """Plan one sink against the store as it is now."""
    sink = get_sink(name)
    desired, revision = read_desired(engine)
    return sink.plan(desired, revision, settings)


def run_sinks(
    settings: Settings, engine: Engine, names: list[str] | None = None
) -> list[SinkResult]:
    """Plan and apply each configured sink (``settings.sinks``). Never raises.

    A sink that fails keeps its target's last good state and reports the error in its result
    (``result.error``), logged once; the other sinks still run.
    """
    names = list(settings.sinks if names is None else names)
    if not names:
        return []
    desired, revision = read_desired(engine)
    results = []
    for name in names:
        try:
            sink = get_sink(name)
            plan = sink.plan(desired, revision, settings)
            result = sink.apply(plan, settings)
        except Exception as exc:  # one broken sink must not stop the others
            temporary = isinstance(exc, TemporaryError)
            text = str(exc) if isinstance(exc, EnforcerError) else f"{type(exc).__name__}: {exc}"
            log.error("sink_failed", sink=name, revision=revision, error=text, temporary=temporary)
            results.append(SinkResult(sink=name, target="", revision=revision, error=text))
            continue
        log.info(
            "sink_applied",
            sink=name,
            target=result.target,
            revision=revision,
            created=result.created,
            updated=result.updated,
            deleted=result.deleted,
            written=result.written,
            failed=len(result.failed),
            error=result.error or None,
        )
        results.append(result)
    return results
