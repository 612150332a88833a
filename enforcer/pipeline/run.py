"""The pipeline, start to end: policy files -> desired state -> plan against the store -> apply,
and the store -> sinks step after it.

Thin glue between the pure core (`compile_policy`, `expand`, `reconcile`), the store and the
sinks: the CLI, the daemon and the console call these for the policy -> store -> sinks path
instead of joining the core and the store themselves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from enforcer.config import Settings
from enforcer.decide.expand import DesiredState
from enforcer.decide.reconcile import reconcile
from enforcer.errors import (
    EnforcerError,
    MassDeletionRefused,
    SavedPlanMismatchError,
    StalePlanError,
    TemporaryError,
)
from enforcer.gcpause import paused_gc
from enforcer.models import ALL_DEVICES, Indicator
from enforcer.pipeline.load import expand_state as expand_state  # re-exported
from enforcer.pipeline.load import load_desired as load_desired  # re-exported
from enforcer.pipeline.load import load_state as load_state  # re-exported
from enforcer.plan.digest import digest_indicators
from enforcer.plan.model import ChangeAction, Plan
from enforcer.sinks.base import Ranking, Sink, SinkChange, SinkPlan, SinkResult, get_sink
from enforcer.store.feed import current_revision
from enforcer.store.indicators import apply_plan, read_actual
from enforcer.store.lookup import iter_indicators


def make_plan(engine: Engine, desired: DesiredState, *, impact_preview: bool = True) -> Plan:
    """Plan the changes from the store's current state to `desired` (reads only what differs).

    With `impact_preview`, the plan also says what the last 7 days of Cloud Discovery data show
    each newly blocked or warned app would have affected.
    """
    # The whole plan builds up to millions of acyclic objects: keep the cyclic GC out of it.
    with paused_gc():
        digest = digest_indicators(desired.indicators.values())
        with engine.connect() as conn:
            actual = read_actual(conn, digest.buckets)
        plan = reconcile(desired, actual, digest)
        apps = plan.starts_enforcing() if impact_preview else []
        if apps:
            # Imported here: the discovery tables are a noticeable part of the start-up of the
            # commands that only load the policy (`explain`, `policy validate`).
            from enforcer.discovery.reports import impact

            with engine.connect() as conn:
                found = impact(conn, apps)
            plan = dataclasses.replace(
                plan,
                impact={a: found.get(a, {"requests": 0, "users": 0, "devices": 0}) for a in apps},
            )
    return plan


def check_saved_plan(engine: Engine, saved: Plan, desired: DesiredState) -> None:
    """Refuse (SavedPlanMismatchError) a saved plan whose changes are not exactly those that the
    policy set it records gives against the store now.

    The policy set must be the one the plan was made from (same digest), and planning it again
    must give the same changes: so a change edited in the file, or a plan whose exceptions
    expired meanwhile, is never applied.
    """
    if saved.policy_digest != desired.policy_digest:
        raise SavedPlanMismatchError(
            f"the plan was made from another policy set (digest {saved.policy_digest[:12]}, "
            f"the policy set is now {desired.policy_digest[:12]}); run `enforcer plan` again"
        )
    fresh = make_plan(engine, desired, impact_preview=False)
    if fresh.base_revision != saved.base_revision:
        raise StalePlanError(saved.base_revision, fresh.base_revision)

    def effect(plan: Plan) -> set[tuple[tuple[str, str], object, object, object]]:
        return {(c.key, c.action, c.before, c.after) for c in plan.changes}

    differ = effect(saved) ^ effect(fresh)
    if differ:
        keys = sorted({key[1] for key, *_ in differ})
        shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        raise SavedPlanMismatchError(
            f"the plan's changes differ from what its policy set gives against the store now "
            f"({len(keys)} indicator{'s' if len(keys) != 1 else ''}: {shown}); "
            "run `enforcer plan` again"
        )


def apply(
    engine: Engine, plan: Plan, *, actor: str = "", details: Mapping[str, Any] | None = None
) -> int:
    """Apply a plan atomically; returns the store's revision afterwards. A plan with changes
    records its audit row (``policy.apply`` by `actor`, with `details`) in the same transaction."""
    return apply_plan(engine, plan, actor=actor, details=details)


def plan_and_apply(
    engine: Engine,
    desired: DesiredState,
    *,
    actor: str,
    details: Mapping[str, Any] | None = None,
    max_delete_share: float = 1.0,
) -> tuple[Plan, int]:
    """Plan `desired` against the store and apply it; returns the plan and the new revision.

    A plan is refused when the store moved after it was made (a manual indicator added
    meanwhile); it is made again once, then a second `StalePlanError` propagates. No impact
    preview: nobody reads it when nobody is asked to confirm. A plan deleting more than
    `max_delete_share` of the policy indicators raises `MassDeletionRefused` unapplied.
    """
    plan = make_plan(engine, desired, impact_preview=False)
    share = plan.deleted_share()
    if share > max_delete_share:
        raise MassDeletionRefused(
            f"the plan deletes {plan.counts[ChangeAction.DELETE]} of the policy indicators "
            f"({share:.0%}, more than the {max_delete_share:.0%} the daemon applies on its "
            "own): review it with `enforcer plan` and apply it with `enforcer apply`"
        )
    try:
        return plan, apply(engine, plan, actor=actor, details=details)
    except StalePlanError:
        plan = make_plan(engine, desired, impact_preview=False)
    return plan, apply(engine, plan, actor=actor, details=details)


def read_sink_input(engine: Engine) -> tuple[list[Indicator], int]:
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


RANKING_DAYS = 30
"""The window of discovered traffic that ranks indicators for a target with a size limit."""


def sink_ranking(engine: Engine, settings: Settings, days: int = RANKING_DAYS) -> Ranking:
    """Requests of the last `days` days (by app, and by registrable domain for names of no app)
    and risk scores (by app, custom apps included): what a limited target keeps first."""
    from enforcer.discovery.reports import day_range
    from enforcer.pipeline.load import catalog_with_custom_apps
    from enforcer.store.queries import app_usage

    first, last = day_range(days)
    with engine.connect() as conn:
        requests = {
            k: t.transactions for k, t in app_usage(conn, first, last, unrecognised=True).items()
        }
        requests.update((k, t.transactions) for k, t in app_usage(conn, first, last).items())
    try:
        catalog = catalog_with_custom_apps(settings.policy_dir)
    except EnforcerError:  # a broken policy set: the bundled apps' scores still rank
        from enforcer.catalog import load_catalog

        catalog = load_catalog()
    return Ranking(requests=requests, risk={a.id: a.score for a in catalog}, days=days)


def plan_sink_for(
    name: str, desired: list[Indicator], revision: int, settings: Settings, engine: Engine
) -> tuple[Sink, SinkPlan]:
    """Sink `name` and its plan for `desired` at `revision` (with a `Ranking` when it is limited)."""
    sink = get_sink(name)
    ranking = sink_ranking(engine, settings) if getattr(sink, "LIMITED", False) else None
    return sink, sink.plan(desired, revision, settings, ranking=ranking)


def plan_sink(name: str, settings: Settings, engine: Engine) -> SinkPlan:
    """Plan one sink against the store as it is now."""
    desired, revision = read_sink_input(engine)
    return plan_sink_for(name, desired, revision, settings, engine)[1]


@dataclass(frozen=True)
class SinkCheck:
    """What one sink's target holds that the store does not say (its drift), and the repair."""

    sink: str
    target: str
    revision: int
    drift: tuple[SinkChange, ...] = ()
    """Entries missing from the target (+), left in it (-) or different in it (~)."""
    repaired: SinkResult | None = None
    error: str = ""

    @property
    def in_sync(self) -> bool:
        return not self.error and not self.drift


def check_sinks(
    settings: Settings, engine: Engine, names: list[str] | None = None, *, repair: bool = False
) -> list[SinkCheck]:
    """Compare each sink's live content (its file, the tenant's indicators) with the store, and
    with `repair` apply the plan that removes the drift. Never raises for a sink."""
    from enforcer.logs import get_logger

    log = get_logger(__name__)
    names = list(settings.sinks if names is None else names)
    desired, revision = read_sink_input(engine)
    checks = []
    for name in names:
        try:
            sink, plan = plan_sink_for(name, desired, revision, settings, engine)
            drift = plan.changes
            repaired = sink.apply(plan, settings) if drift and repair else None
        except Exception as exc:  # one broken sink must not stop the others
            text = str(exc) if isinstance(exc, EnforcerError) else f"{type(exc).__name__}: {exc}"
            log.error("sink_check_failed", sink=name, revision=revision, error=text)
            checks.append(SinkCheck(name, "", revision, error=text))
            continue
        check = SinkCheck(
            name, plan.target, revision, drift, repaired, repaired.error if repaired else ""
        )
        if drift:
            counts = {a.name.lower(): n for a, n in plan.counts.items()}
            log.warning(
                "sink_drift",
                sink=name,
                target=plan.target,
                revision=revision,
                **counts,
                names=[c.name for c in drift[:20]],
                repaired=repaired is not None and repaired.ok,
            )
        checks.append(check)
    return checks


def run_sinks(
    settings: Settings, engine: Engine, names: list[str] | None = None
) -> list[SinkResult]:
    """Plan and apply each sink of `names` (default: ``settings.sinks``). Never raises for a sink.

    A sink that fails keeps its target's last good state and reports the error in its result
    (``result.error``), logged once; the other sinks still run.
    """
    # Imported here: the policy commands (`explain`, `policy validate`) load this module and
    # never log; structlog is a noticeable part of their start-up.
    from enforcer.logs import get_logger

    log = get_logger(__name__)
    names = list(settings.sinks if names is None else names)
    if not names:
        return []
    desired, revision = read_sink_input(engine)
    results = []
    for name in names:
        try:
            sink, plan = plan_sink_for(name, desired, revision, settings, engine)
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
            overflow=result.overflow,
            error=result.error or None,
        )
        results.append(result)
    return results
