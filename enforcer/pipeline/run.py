"""The pipeline, start to end: policy files -> desired state -> plan against the store -> apply.

Thin glue between the pure core (`compile_policy`, `expand`, `reconcile`) and the store; the CLI,
the daemon and the API all call these functions and nothing deeper.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from sqlalchemy import Engine

from enforcer.catalog import Catalog, load_catalog
from enforcer.decide.expand import DesiredState, expand
from enforcer.decide.reconcile import reconcile
from enforcer.discovery.reports import impact
from enforcer.gcpause import paused_gc
from enforcer.plan.digest import digest_indicators
from enforcer.plan.model import Plan
from enforcer.policy.evaluate import SanctionState, compile_policy
from enforcer.policy.loader import load_policy_files
from enforcer.store.indicators import apply_plan, read_actual


def load_state(
    policy_dir: Path, *, now: dt.datetime | None = None, catalog: Catalog | None = None
) -> SanctionState:
    """Read and check the policy set; raises PolicySetError listing every problem."""
    policy = load_policy_files(policy_dir)
    return compile_policy(policy, catalog or load_catalog(), now or dt.datetime.now(dt.UTC))


def load_desired(
    policy_dir: Path, *, now: dt.datetime | None = None, catalog: Catalog | None = None
) -> DesiredState:
    """The desired indicator set of a policy directory."""
    state = load_state(policy_dir, now=now, catalog=catalog)
    with paused_gc():
        return expand(state)


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
            with engine.connect() as conn:
                found = impact(conn, apps)
            plan = dataclasses.replace(
                plan,
                impact={a: found.get(a, {"requests": 0, "users": 0, "devices": 0}) for a in apps},
            )
    return plan


def apply(engine: Engine, plan: Plan, *, actor: str = "") -> int:
    """Apply a plan atomically; returns the store's revision afterwards."""
    return apply_plan(engine, plan, actor=actor)
