"""Sanction state + catalog -> desired domain indicators (pure: no I/O, no clock).

Steps, each visible below:

1. every unsanctioned / monitored decision gives one indicator per domain of its app;
   a scoped ``sanctioned`` decision under a global block gives ``Allowed`` indicators for that scope;
   policy ``allow`` entries give ``Allowed`` indicators, until their ``expires`` (an entry past it
   is left out and reported in `DesiredState.expired`, like an expired exception);
2. duplicates (a domain served by two governed apps) merge to the strongest action;
3. shared domains: a domain that is, or is a parent of, a domain of a *sanctioned* app is never
   blocked silently: it becomes a `Conflict`, kept out of the desired set unless a ``conflicts``
   entry resolves it (``block`` keeps the indicator, ``allow`` drops it);
4. collapse: an indicator whose nearest covering parent has the same action adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from enforcer.catalog import App
from enforcer.errors import Location
from enforcer.models import ALL_DEVICES, Action, Indicator, Severity, Tag, normalize
from enforcer.plan.model import AppState, ExpiredEntry, ReviewNote
from enforcer.policy.evaluate import Decision, SanctionState

Key = tuple[str, str]
"""(scope, domain): the identity of an indicator."""

MANAGED_MARKER = "Managed by Enforcer"


@dataclass(frozen=True, slots=True)
class Conflict:
    """A domain a governed app would block that a sanctioned app also uses."""

    domain: str
    scope: str
    app_id: str
    """The app whose decision wants the domain blocked (or warned, audited)."""
    action: Action
    sanctioned_apps: tuple[str, ...]
    origin: Location
    resolution: str | None = None
    """None while unresolved; "block" or "allow" with `resolved_at` when a policy entry decides."""
    resolved_at: Location | None = None


@dataclass(frozen=True)
class DesiredState:
    """What the store should hold: indicators by key, plus what explains them."""

    indicators: Mapping[Key, Indicator]
    conflicts: tuple[Conflict, ...] = ()
    collapsed: int = 0
    """How many indicators were dropped because a parent with the same action covers them."""
    decisions: Mapping[tuple[str, str], Decision] = field(default_factory=dict)
    allow_origins: Mapping[Key, Location] = field(default_factory=dict)
    policy_digest: str = ""
    apps: tuple[AppState, ...] = ()
    """Every app with a decision, and its tags: the store keeps them for reports and the console."""
    device_groups: tuple[tuple[str, str], ...] = ()
    expired: tuple[ExpiredEntry, ...] = ()
    """Allow entries and exceptions whose ``expires`` has passed (left out)."""

    def origin_of(self, indicator: Indicator) -> tuple[Location | None, str]:
        """Which policy line made this indicator, and how."""
        if indicator.app_id:
            for scope in (indicator.scope, ALL_DEVICES):
                decision = self.decisions.get((indicator.app_id, scope))
                if decision is not None:
                    return decision.origin, f"{decision.tag.value} by {decision.reason}"
        at = self.allow_origins.get(indicator.key)
        return at, "allow entry" if at else "merged"


def expand(state: SanctionState) -> DesiredState:
    """Turn decisions into the desired indicator set (see the module docstring for the steps)."""
    candidates: dict[Key, Indicator] = {}
    for decision in state.decisions.values():
        app = state.catalog.get(decision.app_id)
        for indicator in _indicators_for(decision, app, state):
            _merge(candidates, indicator)
    allow_origins: dict[Key, Location] = {}
    for located in state.policy.allow:
        entry = located.item
        if entry.expires is not None and entry.expires <= state.now:
            continue  # reported by `_expired`; an expired Allowed must never replace a block
        for scope in entry.scope or [ALL_DEVICES]:
            ind = Indicator(
                value=normalize(entry.domain),
                action=Action.ALLOWED,
                severity=Severity.INFORMATIONAL,
                scope=scope,
                title="Allowed by policy",
                description=f"{entry.reason or 'Policy allow entry'}. {MANAGED_MARKER}.",
                expiration=entry.expires,
            )
            _merge(candidates, ind)
            allow_origins[ind.key] = located.at
    conflicts = _resolve_conflicts(candidates, state)
    collapsed = _collapse(candidates)
    return DesiredState(
        indicators=candidates,
        conflicts=tuple(conflicts),
        collapsed=collapsed,
        decisions=state.decisions,
        allow_origins=allow_origins,
        policy_digest=state.policy.digest,
        apps=_app_states(state),
        device_groups=tuple(
            sorted((g.item.name, g.item.description) for g in state.policy.device_groups)
        ),
        expired=_expired(state),
    )


def _expired(state: SanctionState) -> tuple[ExpiredEntry, ...]:
    """The allow entries and exceptions of the policy set that `state.now` has passed."""
    found = [
        ExpiredEntry("allow", a.item.domain, a.item.expires.isoformat(), str(a.at))
        for a in state.policy.allow
        if a.item.expires is not None and a.item.expires <= state.now
    ]
    found += [
        ExpiredEntry("exception", e.item.app, e.item.expires.isoformat(), str(e.at))
        for e in state.policy.exceptions
        if e.item.expires <= state.now
    ]
    return tuple(found)


def _app_states(state: SanctionState) -> tuple[AppState, ...]:
    """Every app with a decision, a custom tag or a review: what reports and the console show."""
    tags: dict[str, list[tuple[str, str, str]]] = {}
    for (app_id, scope), decision in sorted(state.decisions.items()):
        tags.setdefault(app_id, []).append((scope, decision.tag.value, str(decision.origin)))
    out = []
    for app_id in sorted({*tags, *state.custom_tags, *state.reviews}):
        app = state.catalog.get(app_id)
        review = state.reviews.get(app_id)
        note = (
            ReviewNote(
                review.owner, review.due.isoformat(), review.note, review.tag.value,
                str(review.origin),
            )
            if review is not None
            else None
        )  # fmt: skip
        out.append(
            AppState(
                app_id,
                app.name,
                app.category,
                app.score,
                tuple(tags.get(app_id, ())),
                tuple(sorted(state.custom_tags.get(app_id, ()))),
                note,
            )
        )
    return tuple(out)


def _indicators_for(decision: Decision, app: App, state: SanctionState) -> Iterator[Indicator]:
    if decision.action is not None:
        action, tag = decision.action, decision.tag.value
    elif decision.scope != ALL_DEVICES and _governed_everywhere(decision.app_id, state):
        action, tag = Action.ALLOWED, "sanctioned for this group"
    else:
        return
    title = f"{app.name} ({tag})"
    description = (
        f"{app.name} ({app.vendor}), category {app.category}, risk {app.score:.1f}/10. "
        f"{MANAGED_MARKER}."
    )
    # Positional: a million indicators are built here on a large catalog.
    severity, scope, alert, expires = (
        decision.severity,
        decision.scope,
        decision.generate_alert,
        decision.expires,
    )
    for domain in app.domains:
        yield Indicator(domain, action, severity, scope, title, description, app.id, alert, expires)


def _governed_everywhere(app_id: str, state: SanctionState) -> bool:
    everywhere = state.decisions.get((app_id, ALL_DEVICES))
    return everywhere is not None and everywhere.action is not None


def _merge(candidates: dict[Key, Indicator], indicator: Indicator) -> None:
    current = candidates.get(indicator.key)
    if current is None or _wins(indicator, current):
        candidates[indicator.key] = indicator


def _wins(new: Indicator, current: Indicator) -> bool:
    if new.action.strength != current.action.strength:
        return new.action.strength > current.action.strength
    return new.app_id < current.app_id


def ancestors(domain: str) -> Iterator[str]:
    """The parents of a domain, nearest first: a.b.c -> b.c, c."""
    dot = domain.find(".")
    while dot >= 0:
        domain = domain[dot + 1 :]
        yield domain
        dot = domain.find(".")


def _sanctioned_domains(state: SanctionState) -> dict[str, dict[str, set[str]]]:
    """scope -> (domain or parent of a domain of a sanctioned app -> those apps)."""
    covered: dict[str, dict[str, set[str]]] = {}
    for decision in state.decisions.values():
        if decision.tag is not Tag.SANCTIONED:
            continue
        per_scope = covered.setdefault(decision.scope, {})
        for domain in state.catalog.get(decision.app_id).domains:
            per_scope.setdefault(domain, set()).add(decision.app_id)
            for parent in ancestors(domain):
                per_scope.setdefault(parent, set()).add(decision.app_id)
    return covered


def _resolve_conflicts(candidates: dict[Key, Indicator], state: SanctionState) -> list[Conflict]:
    covered = _sanctioned_domains(state)
    if not covered:
        return []
    resolutions = {normalize(c.item.domain): c for c in state.policy.conflicts}
    conflicts: list[Conflict] = []
    for key, indicator in list(candidates.items()):
        if indicator.action is Action.ALLOWED:
            continue
        scope, domain = key
        sanctioned: set[str] = set()
        for covering_scope in {ALL_DEVICES, scope}:
            sanctioned |= covered.get(covering_scope, {}).get(domain, set())
        sanctioned.discard(indicator.app_id)
        if not sanctioned:
            continue
        decision = state.decisions.get((indicator.app_id, scope))
        origin = decision.origin if decision else Location("")
        resolution = resolutions.get(domain)
        if resolution is None or resolution.item.resolve == "allow":
            del candidates[key]
        conflicts.append(
            Conflict(
                domain=domain,
                scope=scope,
                app_id=indicator.app_id,
                action=indicator.action,
                sanctioned_apps=tuple(sorted(sanctioned)),
                origin=origin,
                resolution=resolution.item.resolve if resolution else None,
                resolved_at=resolution.at if resolution else None,
            )
        )
    return sorted(conflicts, key=lambda c: (c.domain, c.scope))


def _collapse(candidates: dict[Key, Indicator]) -> int:
    redundant: list[Key] = []
    get = candidates.get
    for key, indicator in candidates.items():
        scope, parent = key
        dot = parent.find(".")
        while dot >= 0:  # the parents, nearest first (inlined `ancestors`: a hot loop)
            parent = parent[dot + 1 :]
            cover = get((scope, parent))
            if cover is None and scope != ALL_DEVICES:
                cover = get((ALL_DEVICES, parent))
            if cover is not None:
                if cover.action is indicator.action:
                    redundant.append(key)
                break
            dot = parent.find(".")
    for key in redundant:
        del candidates[key]
    return len(redundant)
