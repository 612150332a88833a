"""Rules to decisions: which tag each app has in each scope, and which line of which file said so.

`compile_policy` checks the policy set against the catalog (unknown apps and groups, duplicate
entries, custom-app collisions: every error at once) and evaluates precedence:

1. an unexpired exception for the app in that scope,
2. an explicit ``apps`` entry for the app in that scope,
3. the first matching rule for that scope (files in name order, rules in file order).

An entry that names a schedule takes part only while `now` is inside the schedule's windows;
outside them it is as if it were not written, and the next level decides. The state records
every scheduled entry with its next edge (`ScheduledEntry`), so a caller can say when each
decision will change; the daemon re-evaluates at that instant.

A decision in one scope never leaks into another; docs/policy.md explains how scopes combine on a
device that is in several of them.

Review states and custom tags ride along without deciding anything: an ``apps`` entry tagged
``unreviewed`` or ``in-review`` is skipped by precedence (the rules decide that app), its review
(owner, due date, note) is kept in `SanctionState.reviews`, and the custom tags of every apps
entry are gathered per app in `SanctionState.custom_tags`, which rules match with ``tagged`` and
``except_tagged``.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from enforcer.catalog import CATEGORIES, App, Catalog, CatalogError
from enforcer.errors import Location, PolicyError, PolicySetError
from enforcer.models import ALL_DEVICES, Action, Severity, Tag, normalize
from enforcer.policy.loader import Located, PolicySet
from enforcer.policy.schedule import in_force, next_edge
from enforcer.policy.schema import AppEntry, Exception_, Review, Rule, Schedule, TagDefaults


@dataclass(frozen=True, slots=True)
class Decision:
    """One app's tag in one scope, with what it turns into and why."""

    app_id: str
    scope: str
    tag: Tag
    action: Action | None
    """None for sanctioned apps: they produce no indicator of their own."""
    severity: Severity
    generate_alert: bool
    expires: dt.datetime | None
    origin: Location
    reason: str
    """Human text: which kind of entry decided ("apps entry", "rule 'x'", "exception until ...")."""
    schedule: str | None = None
    """The schedule of the entry that decided, if it has one (it is in force now)."""


@dataclass(frozen=True, slots=True)
class ScheduledEntry:
    """An app entry, rule or exception with a schedule, and where that schedule stands now."""

    section: str
    """``apps``, ``rules`` or ``exceptions``."""
    label: str
    """The app id (apps, exceptions) or the rule's name."""
    schedule: str
    timezone: str
    in_force: bool
    next_edge: dt.datetime | None
    """When `in_force` next flips (None: never within a week)."""
    origin: Location


@dataclass(frozen=True, slots=True)
class AppReview:
    """An app's review as the policy states it: who decides, by when, and about what."""

    app_id: str
    owner: str
    due: dt.date
    note: str
    tag: Tag
    """The entry's tag: ``in-review``, or the sanction in force while it is reconsidered."""
    origin: Location

    def overdue(self, now: dt.datetime) -> bool:
        """Whether the due date (a whole UTC day) has passed at `now`."""
        return now.astimezone(dt.UTC).date() > self.due


@dataclass(frozen=True)
class SanctionState:
    """The desired sanction state: every decision, the catalog it refers to and the policy set."""

    decisions: Mapping[tuple[str, str], Decision]
    catalog: Catalog
    policy: PolicySet
    now: dt.datetime
    scheduled: tuple[ScheduledEntry, ...] = ()
    custom_tags: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """App id -> the custom tags its apps entries give it."""
    reviews: Mapping[str, AppReview] = field(default_factory=dict)
    """App id -> its review, for the apps an entry puts in review."""
    unreviewed: frozenset[str] = frozenset()
    """Apps an entry explicitly tags ``unreviewed`` (every app without any entry is too)."""

    def next_expiry(self) -> dt.datetime | None:
        """When the state next changes after `now`: an exception or allow entry expires, or a
        scheduled entry's schedule reaches a window edge."""
        times = [e.item.expires for e in self.policy.exceptions if e.item.expires > self.now]
        times += [
            a.item.expires
            for a in self.policy.allow
            if a.item.expires and a.item.expires > self.now
        ]
        times += [s.next_edge for s in self.scheduled if s.next_edge is not None]
        return min(times) if times else None

    def schedules_of(self, app: App) -> list[ScheduledEntry]:
        """The scheduled entries that can decide `app`: its apps entries and exceptions, and
        the scheduled rules that match it."""
        tags = self.custom_tags.get(app.id, frozenset())
        rules = {r.item.name for r in self.policy.rules if _rule_matches(r.item, app, tags)}
        return [
            s
            for s in self.scheduled
            if (s.label in rules if s.section == "rules" else s.label == app.id)
        ]


def compile_policy(policy: PolicySet, catalog: Catalog, now: dt.datetime) -> SanctionState:
    """Validate the policy set against the catalog and decide every (app, scope).

    The schema errors a partly read set carries (`PolicySet.refused`) are raised together with
    the catalog's, so every error of the set comes out of one run."""
    errors: list[PolicyError] = list(policy.refused)
    full_catalog = _with_custom_apps(policy, catalog, errors)
    _check_groups(policy, errors)
    _check_references(policy, full_catalog, errors)
    _check_domains(policy, errors)
    _check_alert_policies(policy, full_catalog, errors)
    schedules = _schedules(policy, errors)
    explicit = _explicit_entries(policy, errors)
    custom_tags = _custom_tags(policy, errors)
    reviews = _reviews(policy, errors)
    if errors:
        raise PolicySetError(errors)

    scheduled = _scheduled_entries(policy, schedules, now)
    active = _Active({name: in_force(schedule, now) for name, schedule in schedules.items()})
    decisions: dict[tuple[str, str], Decision] = {}
    exceptions = _active_exceptions(policy, now, active)
    for app in full_catalog:
        tags = custom_tags.get(app.id, frozenset())
        for scope in _scopes_mentioned(policy):
            entry = explicit.get((app.id, scope))
            decision = (
                exceptions.get((app.id, scope))
                or _from_entry(entry if entry and active(entry) else None, policy, scope)
                or _from_rules(app, tags, policy, scope, active)
            )
            if decision is not None:
                decisions[(app.id, scope)] = decision
    return SanctionState(
        decisions=decisions,
        catalog=full_catalog,
        policy=policy,
        now=now,
        scheduled=tuple(scheduled),
        custom_tags=custom_tags,
        reviews=reviews,
        unreviewed=frozenset(e.item.app for e in policy.apps if e.item.tag is Tag.UNREVIEWED),
    )


def _custom_tags(policy: PolicySet, errors: list[PolicyError]) -> dict[str, frozenset[str]]:
    """The custom tags per app; a rule naming a custom tag that no apps entry gives is an
    error (a misspelt tag would otherwise match nothing, silently)."""
    found: dict[str, set[str]] = {}
    for located in policy.apps:
        if located.item.tags:
            found.setdefault(located.item.app, set()).update(located.item.tags)
    given = {tag for tags in found.values() for tag in tags}
    for rule in policy.rules:
        for field_name in ("tagged", "except_tagged"):
            for tag in getattr(rule.item, field_name):
                if tag not in given:
                    errors.append(
                        PolicyError(
                            rule.at,
                            f"rules.{field_name}",
                            f"custom tag {tag!r} is not given to any app by an apps entry"
                            + _suggest(tag, given),
                        )
                    )
    return {app_id: frozenset(tags) for app_id, tags in found.items()}


def _reviews(policy: PolicySet, errors: list[PolicyError]) -> dict[str, AppReview]:
    """Each app's review; an app has at most one."""
    found: dict[str, AppReview] = {}
    for located in policy.apps:
        entry = located.item
        review: Review | None = entry.review
        if review is None:
            continue
        if entry.app in found:
            errors.append(
                PolicyError(
                    located.at,
                    "apps.review",
                    f"{entry.app!r} is already in review at {found[entry.app].origin}",
                )
            )
            continue
        found[entry.app] = AppReview(
            entry.app, review.owner, review.due, review.note, entry.tag, located.at
        )
    return found


@dataclass(frozen=True, slots=True)
class _Active:
    """Whether an entry takes part now: it has no schedule, or its schedule is in force."""

    in_force: Mapping[str, bool]
    """Schedule name -> whether it is in force now."""

    def __call__(self, entry: Located[AppEntry] | Located[Rule] | Located[Exception_]) -> bool:
        name = entry.item.schedule
        return name is None or self.in_force[name]


def _schedules(policy: PolicySet, errors: list[PolicyError]) -> dict[str, Schedule]:
    """The declared schedules by name; a duplicate name or a reference to an undeclared one
    is an error at the entry that has it."""
    declared: dict[str, Located[Schedule]] = {}
    for located in policy.schedules:
        name = located.item.name
        if name in declared:
            errors.append(
                PolicyError(
                    located.at,
                    "schedules.name",
                    f"{name!r} already declared at {declared[name].at}",
                )
            )
        else:
            declared[name] = located
    sections: list[tuple[str, Iterable[Located[Any]]]] = [
        ("apps", policy.apps),
        ("rules", policy.rules),
        ("exceptions", policy.exceptions),
    ]
    for section, entries in sections:
        for entry in entries:
            name = entry.item.schedule
            if name is not None and name not in declared and name not in policy.refused_names:
                errors.append(
                    PolicyError(
                        entry.at,
                        f"{section}.schedule",
                        f"schedule {name!r} is not declared in any schedules section"
                        + _suggest(name, declared),
                    )
                )
    return {name: located.item for name, located in declared.items()}


def _scheduled_entries(
    policy: PolicySet, schedules: Mapping[str, Schedule], now: dt.datetime
) -> list[ScheduledEntry]:
    found: list[ScheduledEntry] = []
    sections: list[tuple[str, Iterable[Located[Any]]]] = [
        ("exceptions", policy.exceptions),
        ("apps", policy.apps),
        ("rules", policy.rules),
    ]
    for section, entries in sections:
        for entry in entries:
            schedule = schedules.get(entry.item.schedule or "")
            if schedule is None:
                continue
            label = entry.item.name if section == "rules" else entry.item.app
            found.append(
                ScheduledEntry(
                    section=section,
                    label=label,
                    schedule=schedule.name,
                    timezone=schedule.timezone,
                    in_force=in_force(schedule, now),
                    next_edge=next_edge(schedule, now),
                    origin=entry.at,
                )
            )
    return found


def _scopes(scope: list[str]) -> list[str]:
    return list(scope) if scope else [ALL_DEVICES]


def _scopes_mentioned(policy: PolicySet) -> list[str]:
    found = {ALL_DEVICES}
    for section in (policy.apps, policy.rules, policy.exceptions):
        for located in section:
            found.update(_scopes(located.item.scope))
    return sorted(found)


def _with_custom_apps(policy: PolicySet, catalog: Catalog, errors: list[PolicyError]) -> Catalog:
    seen: dict[str, Location] = {}
    customs: list[App] = []
    for located in policy.custom_apps:
        app = located.item
        if app.id in catalog:
            errors.append(
                PolicyError(located.at, "custom_apps.id", f"{app.id!r} is a bundled catalog app")
            )
        elif app.id in seen:
            errors.append(
                PolicyError(
                    located.at, "custom_apps.id", f"{app.id!r} already defined at {seen[app.id]}"
                )
            )
        else:
            seen[app.id] = located.at
            customs.append(app.model_copy(update={"custom": True}))
    try:
        return catalog.with_custom(customs)
    except CatalogError as exc:
        errors.append(PolicyError(policy.custom_apps[0].at, "custom_apps", str(exc)))
        return catalog


def _check_groups(policy: PolicySet, errors: list[PolicyError]) -> None:
    declared: dict[str, Location] = {}
    for located in policy.device_groups:
        name = located.item.name
        if name in declared:
            errors.append(
                PolicyError(
                    located.at,
                    "device_groups.name",
                    f"{name!r} already declared at {declared[name]}",
                )
            )
        declared[name] = located.at
    scoped: list[tuple[str, Iterable[Located[Any]]]] = [
        ("apps", policy.apps),
        ("rules", policy.rules),
        ("exceptions", policy.exceptions),
        ("allow", policy.allow),
        ("alert_policies", policy.alert_policies),
    ]
    for section, entries in scoped:
        for entry in entries:
            for group in entry.item.scope:
                if group not in declared and group not in policy.refused_names:
                    errors.append(
                        PolicyError(
                            entry.at,
                            f"{section}.scope",
                            f"device group {group!r} is not declared in any device_groups section"
                            + _suggest(group, declared),
                        )
                    )


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_references(policy: PolicySet, catalog: Catalog, errors: list[PolicyError]) -> None:
    ids = [app.id for app in catalog]
    for section, entries in (("apps", policy.apps), ("exceptions", policy.exceptions)):
        for located in entries:
            if located.item.app not in catalog and located.item.app not in policy.refused_names:
                errors.append(
                    PolicyError(
                        located.at,
                        f"{section}.app",
                        f"unknown app {located.item.app!r}" + _suggest(located.item.app, ids),
                    )
                )
    for rule in policy.rules:
        for category in rule.item.categories:
            if category not in CATEGORIES:
                errors.append(
                    PolicyError(
                        rule.at,
                        "rules.category",
                        f"unknown category {category!r}" + _suggest(category, CATEGORIES),
                    )
                )
        for app_id in rule.item.except_:
            if app_id not in catalog and app_id not in policy.refused_names:
                errors.append(
                    PolicyError(
                        rule.at, "rules.except", f"unknown app {app_id!r}" + _suggest(app_id, ids)
                    )
                )
        lo, hi = rule.item.min_risk, rule.item.max_risk
        if lo is not None and hi is not None and lo > hi:
            errors.append(PolicyError(rule.at, "rules.min_risk", "min_risk is above max_risk"))
        if not rule.item.categories and lo is None and hi is None and not rule.item.tagged:
            errors.append(
                PolicyError(
                    rule.at, "rules", "a rule needs a category, min_risk, max_risk or tagged"
                )
            )


def _check_alert_policies(policy: PolicySet, catalog: Catalog, errors: list[PolicyError]) -> None:
    """Alert policy names are unique (an alert names its policy) and their apps exist."""
    seen: dict[str, Location] = {}
    ids = [app.id for app in catalog]
    for located in policy.alert_policies:
        name = located.item.name
        if name in seen:
            errors.append(
                PolicyError(
                    located.at, "alert_policies.name", f"{name!r} already defined at {seen[name]}"
                )
            )
        seen.setdefault(name, located.at)
        for app_id in located.item.apps:
            if app_id not in catalog and app_id not in policy.refused_names:
                errors.append(
                    PolicyError(
                        located.at,
                        "alert_policies.apps",
                        f"unknown app {app_id!r}" + _suggest(app_id, ids),
                    )
                )


def _check_domains(policy: PolicySet, errors: list[PolicyError]) -> None:
    for section, entries in (("allow", policy.allow), ("conflicts", policy.conflicts)):
        for located in entries:
            try:
                normalize(located.item.domain)
            except (ValueError, UnicodeError):
                errors.append(
                    PolicyError(
                        located.at,
                        f"{section}.domain",
                        f"{located.item.domain!r} is not a domain name",
                    )
                )


def _explicit_entries(
    policy: PolicySet, errors: list[PolicyError]
) -> dict[tuple[str, str], Located[AppEntry]]:
    found: dict[tuple[str, str], Located[AppEntry]] = {}
    for located in policy.apps:
        for scope in _scopes(located.item.scope):
            key = (located.item.app, scope)
            if key in found:
                where = "all devices" if scope == ALL_DEVICES else f"scope {scope!r}"
                errors.append(
                    PolicyError(
                        located.at,
                        "apps.app",
                        f"{located.item.app!r} for {where} is already tagged at {found[key].at}",
                    )
                )
            else:
                found[key] = located
    return found


def _active_exceptions(
    policy: PolicySet, now: dt.datetime, takes_part: _Active
) -> dict[tuple[str, str], Decision]:
    active: dict[tuple[str, str], Decision] = {}
    for located in policy.exceptions:
        exc = located.item
        if exc.expires <= now or not takes_part(located):
            continue
        defaults = _tag_defaults(policy, exc.tag)
        for scope in _scopes(exc.scope):
            active.setdefault(
                (exc.app, scope),
                Decision(
                    app_id=exc.app,
                    scope=scope,
                    tag=exc.tag,
                    action=Action.from_policy(defaults.action) if defaults else None,
                    severity=Severity.parse(defaults.severity)
                    if defaults
                    else Severity.INFORMATIONAL,
                    generate_alert=defaults.generate_alert if defaults else False,
                    expires=exc.expires,
                    origin=located.at,
                    reason=f"exception until {exc.expires:%Y-%m-%d %H:%M} UTC"
                    + (f" (schedule {exc.schedule!r})" if exc.schedule else "")
                    + f": {exc.reason}",
                    schedule=exc.schedule,
                ),
            )
    return active


def _tag_defaults(policy: PolicySet, tag: Tag) -> TagDefaults | None:
    if tag is Tag.UNSANCTIONED:
        return policy.defaults.unsanctioned
    if tag is Tag.MONITORED:
        return policy.defaults.monitored
    return None


def _decide(
    app_id: str,
    scope: str,
    entry: AppEntry | Rule,
    policy: PolicySet,
    origin: Location,
    reason: str,
) -> Decision:
    defaults = _tag_defaults(policy, entry.tag)
    action: Action | None = None
    severity = Severity.INFORMATIONAL
    alert = False
    if defaults is not None:
        action = Action.from_policy(entry.action or defaults.action)
        severity = Severity.parse(entry.severity or defaults.severity)
        alert = defaults.generate_alert if entry.generate_alert is None else entry.generate_alert
    if entry.schedule is not None:
        reason = f"{reason} (schedule {entry.schedule!r})"
    return Decision(
        app_id, scope, entry.tag, action, severity, alert, None, origin, reason, entry.schedule
    )


def _from_entry(
    located: Located[AppEntry] | None, policy: PolicySet, scope: str
) -> Decision | None:
    if located is None or located.item.tag.is_review:
        return None  # a review state decides nothing: the rules (or nothing) decide the app
    return _decide(located.item.app, scope, located.item, policy, located.at, "apps entry")


def _from_rules(
    app: App, tags: frozenset[str], policy: PolicySet, scope: str, active: _Active
) -> Decision | None:
    for located in policy.rules:
        rule = located.item
        if scope in _scopes(rule.scope) and _rule_matches(rule, app, tags) and active(located):
            return _decide(app.id, scope, rule, policy, located.at, f"rule {rule.name!r}")
    return None


def _rule_matches(rule: Rule, app: App, tags: frozenset[str]) -> bool:
    """Whether a rule covers an app with these custom tags (its conditions are ANDed)."""
    if app.id in rule.except_:
        return False
    if rule.tagged and tags.isdisjoint(rule.tagged):
        return False
    if not tags.isdisjoint(rule.except_tagged):
        return False
    if rule.categories and app.category not in rule.categories:
        return False
    if rule.min_risk is not None and app.score < rule.min_risk:
        return False
    return not (rule.max_risk is not None and app.score > rule.max_risk)
