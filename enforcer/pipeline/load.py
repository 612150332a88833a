"""Policy files -> sanction state -> desired indicators: the pipeline's first half, which
needs neither the store nor the sinks.

`enforcer explain`, `policy validate` and the console's policy views read the policy through
these without importing the store (whose table models were a third of `explain`'s start-up);
`enforcer.pipeline.run` re-exports them beside the steps that do use the store.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from enforcer.catalog import Catalog, load_catalog
from enforcer.decide.expand import DesiredState, expand
from enforcer.errors import EnforcerError
from enforcer.gcpause import paused_gc
from enforcer.policy.evaluate import SanctionState, compile_policy
from enforcer.policy.loader import directory_digest, read_policy_files
from enforcer.policy.schema import AlertPolicy


def load_state(
    policy_dir: Path, *, now: dt.datetime | None = None, catalog: Catalog | None = None
) -> SanctionState:
    """Read and check the policy set; raises PolicySetError listing every problem, schema and
    catalog errors alike, in one pass."""
    policy = read_policy_files(policy_dir)
    return compile_policy(policy, catalog or load_catalog(), now or dt.datetime.now(dt.UTC))


def load_desired(
    policy_dir: Path, *, now: dt.datetime | None = None, catalog: Catalog | None = None
) -> DesiredState:
    """The desired indicator set of a policy directory."""
    return expand_state(load_state(policy_dir, now=now, catalog=catalog))


def expand_state(state: SanctionState) -> DesiredState:
    """The desired indicator set of a checked sanction state."""
    # Expansion builds up to millions of acyclic objects: keep the cyclic GC out of it.
    with paused_gc():
        return expand(state)


_CATALOGS: dict[Path, tuple[str, Catalog, tuple[AlertPolicy, ...]]] = {}
"""policy directory -> (its files' digest, catalog with its custom apps, alert policies):
reports and uploads ask on every request, and the policy set changes rarely."""


def catalog_with_custom_apps(policy_dir: Path) -> Catalog:
    """The bundled catalog plus the policy set's custom apps: what discovery attributes hosts
    to, so that a custom app's domains are reported under it, not as unrecognised. The bundled
    catalog alone while the policy set does not load (its errors are the daemon's to report).
    Compiled once per version of the policy files (`directory_digest`)."""
    return discovery_policy(policy_dir)[0]


def discovery_policy(policy_dir: Path) -> tuple[Catalog, tuple[AlertPolicy, ...]]:
    """`catalog_with_custom_apps`, and the policy set's alert policies (none while the set
    does not load: the daemon reports its errors and keeps the last good indicators)."""
    try:
        digest = directory_digest(policy_dir)
    except (OSError, EnforcerError):
        return load_catalog(), ()
    cached = _CATALOGS.get(policy_dir)
    if cached is not None and cached[0] == digest:
        return cached[1], cached[2]
    try:
        state = load_state(policy_dir)
        catalog = state.catalog
        policies = tuple(p.item for p in state.policy.alert_policies)
    except EnforcerError:
        catalog, policies = load_catalog(), ()
    _CATALOGS[policy_dir] = (digest, catalog, policies)
    return catalog, policies


__all__ = [
    "catalog_with_custom_apps",
    "discovery_policy",
    "expand_state",
    "load_desired",
    "load_state",
]
