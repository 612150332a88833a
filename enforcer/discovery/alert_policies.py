"""Alert policies: what a roll-up's facts raise under each policy of the policy repo (pure).

Every source gathers, after each roll-up (the daemon's of device events, an upload's, a
syslog collector's), the `Facts` of what it just rolled up (apps never seen
before, each machine's upload to each app that day against its 30 days before, machines whose
risk turned high, hits on blocked apps) and `evaluate` turns them into `AlertHit`s, one per
(policy, machine, user, app): the store keeps one open alert per such key, with a count and a
last-seen time (`enforcer.store.alerts.raise_policy_alerts`). No store, no clock here.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from enforcer.policy.schema import AlertPolicy

DEFAULT_MIN_UPLOAD = 10_000_000
"""Bytes a day's upload must reach to be a spike when the policy does not say (10 MB)."""
BASELINE_DAYS = 30


@dataclass(frozen=True, slots=True)
class NewApp:
    """An app rolled up for the first time."""

    app_id: str
    risk: float | None
    first_seen: float
    machines: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DailyUpload:
    """A machine's (or user's) upload to an app on one day, and its 30 days before."""

    who: str
    """Machine name, or user name for a per-user measure."""
    app_id: str
    day: int
    bytes_up: int
    baseline: tuple[int, ...]
    """Upload on each of the `BASELINE_DAYS` days before (0 for a day without use)."""
    last_seen: float
    machine: str = ""
    """For a per-user measure, the machine the user uploaded from (for the alert's scope)."""


@dataclass(frozen=True, slots=True)
class RiskTurn:
    """A machine whose risk level turned high (it was not high the day before)."""

    machine: str
    reasons: tuple[str, ...]
    time: float


@dataclass(frozen=True, slots=True)
class BlockedHit:
    """Hits of a machine (and user) on a blocked app."""

    machine: str
    user: str
    app_id: str
    domain: str
    """The last blocked name ("" from logs: their roll-up keeps the app, not the name)."""
    count: int
    last_seen: float
    forms: tuple[str, ...] = ()
    """The raw user names behind `user` when they differ (``CONTOSO\\alice`` for ``alice``)."""


@dataclass
class Facts:
    """What one roll-up brought, gathered by the daemon from the batch and the store."""

    new_apps: list[NewApp] = field(default_factory=list)
    device_uploads: list[DailyUpload] = field(default_factory=list)
    user_uploads: list[DailyUpload] = field(default_factory=list)
    risk_turns: list[RiskTurn] = field(default_factory=list)
    blocked: list[BlockedHit] = field(default_factory=list)
    groups: Mapping[str, Iterable[str]] = field(default_factory=dict)
    """Machine name -> the device groups of its enrolled devices (a machine known only from
    uploaded logs is in none: only policies without a scope watch it)."""


@dataclass(frozen=True, slots=True)
class AlertHit:
    """What one policy raises for one (machine, user, app): the store's alert key."""

    policy: str
    when: str
    severity: str
    machine: str
    user: str
    app_id: str
    domain: str
    count: int
    time: dt.datetime
    details: str


def evaluate(policies: Sequence[AlertPolicy], facts: Facts) -> list[AlertHit]:
    """Every alert the policies raise for these facts."""
    hits: list[AlertHit] = []
    for policy in policies:
        hits.extend(_evaluate_one(policy, facts))
    return hits


def _evaluate_one(policy: AlertPolicy, facts: Facts) -> Iterable[AlertHit]:
    if policy.when == "new_app":
        return _new_apps(policy, facts)
    if policy.when == "upload_spike":
        return _upload_spikes(policy, facts)
    if policy.when == "device_high_risk":
        return _risk_turns(policy, facts)
    return _blocked(policy, facts)


def in_scope(policy: AlertPolicy, machine_groups: Iterable[str]) -> bool:
    """Whether a policy watches a machine in these groups (no scope: every machine)."""
    return not policy.scope or not set(policy.scope).isdisjoint(machine_groups)


def _wants_app(policy: AlertPolicy, app_id: str) -> bool:
    return not policy.apps or app_id in policy.apps


def _hit(policy: AlertPolicy, **values: object) -> AlertHit:
    return AlertHit(policy=policy.name, when=policy.when, severity=policy.severity, **values)  # type: ignore[arg-type]


def _time(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _new_apps(policy: AlertPolicy, facts: Facts) -> Iterable[AlertHit]:
    threshold = policy.min_risk or 0.0
    for app in facts.new_apps:
        if app.risk is None or app.risk < threshold or not _wants_app(policy, app.app_id):
            continue
        machines = [m for m in app.machines if in_scope(policy, facts.groups.get(m, ()))]
        if policy.scope and not machines:
            continue
        shown = ", ".join(sorted(machines)[:5]) + (" ..." if len(machines) > 5 else "")
        yield _hit(
            policy,
            machine="",
            user="",
            app_id=app.app_id,
            domain="",
            count=1,
            time=_time(app.first_seen),
            details=f"new app {app.app_id} (risk {app.risk:g}) first seen on {shown or 'no machine'}",
        )


def _upload_spikes(policy: AlertPolicy, facts: Facts) -> Iterable[AlertHit]:
    factor = policy.factor or 1.0
    floor = DEFAULT_MIN_UPLOAD if policy.min_upload is None else policy.min_upload
    per_user = policy.per == "user"
    for up in facts.user_uploads if per_user else facts.device_uploads:
        machine = up.machine if per_user else up.who
        if not _wants_app(policy, up.app_id) or not in_scope(policy, facts.groups.get(machine, ())):
            continue
        median = statistics.median(up.baseline) if up.baseline else 0
        if up.bytes_up < floor or up.bytes_up <= factor * median:
            continue
        yield _hit(
            policy,
            machine=machine,
            user=up.who if per_user else "",
            app_id=up.app_id,
            domain="",
            count=1,
            time=_time(up.last_seen),
            details=(
                f"{'user' if per_user else 'machine'} {up.who} uploaded {up.bytes_up:,} bytes "
                f"to {up.app_id} on {_day(up.day)}: over {factor:g} x its {BASELINE_DAYS}-day "
                f"median ({median:,.0f} bytes)"
            ),
        )


def _risk_turns(policy: AlertPolicy, facts: Facts) -> Iterable[AlertHit]:
    for turn in facts.risk_turns:
        if not in_scope(policy, facts.groups.get(turn.machine, ())):
            continue
        yield _hit(
            policy,
            machine=turn.machine,
            user="",
            app_id="",
            domain="",
            count=1,
            time=_time(turn.time),
            details=f"machine {turn.machine} turned high risk: " + "; ".join(turn.reasons),
        )


def _blocked(policy: AlertPolicy, facts: Facts) -> Iterable[AlertHit]:
    for hit in facts.blocked:
        if not _wants_app(policy, hit.app_id) or not in_scope(
            policy, facts.groups.get(hit.machine, ())
        ):
            continue
        yield _hit(
            policy,
            machine=hit.machine,
            user=hit.user,
            app_id=hit.app_id,
            domain=hit.domain,
            count=hit.count,
            time=_time(hit.last_seen),
            details=f"{hit.count} hit(s) on blocked app {hit.app_id}"
            + (f" ({hit.domain})" if hit.domain else "")
            + (f", user seen as {', '.join(hit.forms)}" if hit.forms else ""),
        )


def _day(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()
