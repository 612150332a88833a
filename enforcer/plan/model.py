"""The Plan as data: what reconcile decided to change (`Plan`, `Change`) and what it read.

Renderers live in `enforcer.plan.render`, the saved plan file in `enforcer.plan.planfile`, and
the per-bucket digests in `enforcer.plan.digest`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from enforcer.models import Action, Indicator
from enforcer.plan.digest import BucketDigest, Key


@dataclass(frozen=True)
class ActualState:
    """What the store holds, as far as reconcile needs it."""

    revision: int
    digests: Mapping[int, BucketDigest]
    rows: Mapping[Key, Indicator]
    """Managed indicators of the `loaded` buckets (of every bucket when `loaded` is None)."""
    loaded: frozenset[int] | None = None


class ChangeAction(StrEnum):
    """Terraform's symbols: create, update in place, delete."""

    CREATE = "+"
    UPDATE = "~"
    DELETE = "-"


class Change(NamedTuple):
    """One indicator to create, update or delete. `reason` explains; it never drives apply."""

    action: ChangeAction
    key: Key
    before: Indicator | None
    after: Indicator | None
    reason: str = ""

    @property
    def indicator(self) -> Indicator:
        """The state after the change, or before it for a delete."""
        ind = self.after or self.before
        assert ind is not None
        return ind

    @property
    def app_id(self) -> str:
        return self.indicator.app_id


@dataclass(frozen=True, slots=True)
class ConflictNote:
    """A shared-domain conflict as shown in a plan."""

    domain: str
    scope: str
    app_id: str
    action: str
    sanctioned_apps: tuple[str, ...]
    origin: str
    resolution: str | None
    resolved_at: str | None


@dataclass(frozen=True, slots=True)
class ExpiredEntry:
    """A policy entry whose ``expires`` has passed: no longer applied, shown so it gets removed."""

    kind: str
    """``allow`` or ``exception``."""
    subject: str
    """The allowed domain, or the excepted app."""
    expires: str
    """When it expired (ISO 8601, UTC)."""
    origin: str
    """Its file and line."""


@dataclass(frozen=True, slots=True)
class ReviewNote:
    """An app's review as the store remembers it (the policy's ``review`` of an apps entry)."""

    owner: str
    due: str
    """The due date, ``YYYY-MM-DD``."""
    note: str
    tag: str
    """``in-review``, or the sanction tag in force while the app is reconsidered."""
    origin: str

    def overdue(self, today: dt.date) -> bool:
        """Whether the due date is before `today`."""
        return dt.date.fromisoformat(self.due) < today


@dataclass(frozen=True, slots=True)
class AppState:
    """A catalog app and its tags as the store should remember them (not part of the revision feed)."""

    app_id: str
    name: str
    category: str
    risk: float
    tags: tuple[tuple[str, str, str], ...]
    """(scope, tag, origin) per scope where the app has a decision."""
    custom_tags: tuple[str, ...] = ()
    """The app's custom tags (``approved-for-finance``), sorted."""
    review: ReviewNote | None = None
    """Set while an apps entry puts the app in review."""


@dataclass(frozen=True)
class Plan:
    """Changes from the store's `base_revision` to the desired state, plus what explains them."""

    base_revision: int
    changes: tuple[Change, ...]
    conflicts: tuple[ConflictNote, ...] = ()
    bucket_digests: Mapping[int, BucketDigest] = field(default_factory=dict)
    """Desired digests of every bucket the changes touch (written by apply)."""
    policy_digest: str = ""
    collapsed: int = 0
    desired_count: int = 0
    apps: tuple[AppState, ...] = ()
    device_groups: tuple[tuple[str, str], ...] = ()
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    impact: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """Per app the plan starts blocking or warning: what the last 7 days of discovery data say it
    would have affected ({"requests", "users", "devices"}). Explains; never drives apply."""
    expired: tuple[ExpiredEntry, ...] = ()
    """Allow entries and exceptions past their ``expires``: ignored, reported."""

    def overdue_reviews(self) -> list[AppState]:
        """The apps whose review was due before the day the plan was made."""
        today = self.created_at.astimezone(dt.UTC).date()
        return [a for a in self.apps if a.review is not None and a.review.overdue(today)]

    def starts_enforcing(self) -> list[str]:
        """Apps for which the plan creates or tightens a Block or Warn indicator."""
        apps = set()
        for change in self.changes:
            after = change.after
            if after is None or not after.app_id or after.action not in (Action.BLOCK, Action.WARN):
                continue
            if change.before is None or change.before.action != after.action:
                apps.add(after.app_id)
        return sorted(apps)

    @property
    def counts(self) -> dict[ChangeAction, int]:
        out = dict.fromkeys(ChangeAction, 0)
        for change in self.changes:
            out[change.action] += 1
        return out

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def deleted_share(self) -> float:
        """The share of the store's policy indicators this plan deletes (0 when it holds none)."""
        c = self.counts
        before = self.desired_count - c[ChangeAction.CREATE] + c[ChangeAction.DELETE]
        return c[ChangeAction.DELETE] / before if before > 0 else 0.0

    def summary(self) -> str:
        c = self.counts
        return (
            f"Plan: {c[ChangeAction.CREATE]} to add, {c[ChangeAction.UPDATE]} to change, "
            f"{c[ChangeAction.DELETE]} to destroy."
        )
