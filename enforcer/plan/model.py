"""The Plan: what reconcile decided to change, as data. Renderers live in `enforcer.plan.render`.

Also the per-bucket digests that let a no-op plan skip reading the store: every managed
indicator falls in one of `BUCKETS` buckets by a hash of its key, and each bucket's digest is the
sum (mod 2**64) of its indicators' content hashes. Equal digests mean equal buckets (up to a
64-bit hash collision), so reconcile only reads and compares the buckets whose digests differ.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from xxhash import xxh3_64_intdigest

from enforcer.models import Action, Indicator, Severity

BUCKETS = 1 << 16
_MASK64 = (1 << 64) - 1
PLAN_FORMAT = 1

Key = tuple[str, str]


def bucket_of(scope: str, value: str) -> int:
    """The digest bucket of an indicator key (stable across processes and machines).

    Only the value is hashed: the same domain in several scopes shares a bucket, which is fine.
    """
    return xxh3_64_intdigest(value.encode()) & (BUCKETS - 1)


def content_hash(indicator: Indicator) -> int:
    """64-bit hash (XXH3) of every compared field of an indicator."""
    return xxh3_64_intdigest(indicator.canonical().encode())


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building a million acyclic objects.

    Each generation-2 collection walks every live object, so with a million indicators alive the
    collector would otherwise cost more than the work itself; nothing built here forms cycles.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class BucketDigest(NamedTuple):
    """Digest and size of one bucket of managed indicators."""

    digest: int
    size: int


@dataclass
class DesiredDigest:
    """Digests of a desired indicator set, per bucket."""

    buckets: dict[int, BucketDigest]


def digest_indicators(indicators: Iterable[Indicator]) -> DesiredDigest:
    """Per-bucket digests of a set of indicators (order does not matter). The hot loop of a plan."""
    sums: dict[int, int] = {}
    counts: dict[int, int] = {}
    xxh = xxh3_64_intdigest
    mask = BUCKETS - 1
    with paused_gc():
        for ind in indicators:
            bucket = xxh(ind.value.encode()) & mask
            h = xxh(ind.canonical().encode())
            if bucket in sums:
                sums[bucket] = (sums[bucket] + h) & _MASK64
                counts[bucket] += 1
            else:
                sums[bucket] = h
                counts[bucket] = 1
        buckets = {b: BucketDigest(s, counts[b]) for b, s in sums.items()}
    return DesiredDigest(buckets=buckets)


def keys_in_buckets(keys: Iterable[Key], buckets: set[int]) -> dict[int, list[Key]]:
    """The keys that fall in some buckets, grouped by bucket (a second, cheap pass)."""
    out: dict[int, list[Key]] = {}
    if not buckets:
        return out
    xxh = xxh3_64_intdigest
    mask = BUCKETS - 1
    with paused_gc():
        for key in keys:
            bucket = xxh(key[1].encode()) & mask
            if bucket in buckets:
                out.setdefault(bucket, []).append(key)
    return out


def dirty_buckets(
    desired: Mapping[int, BucketDigest], actual: Mapping[int, BucketDigest]
) -> set[int]:
    """Buckets whose contents differ between the desired set and the store."""
    return {b for b in desired.keys() | actual.keys() if desired.get(b) != actual.get(b)}


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
class AppState:
    """A catalog app and its tags as the store should remember them (not part of the revision feed)."""

    app_id: str
    name: str
    category: str
    risk: float
    tags: tuple[tuple[str, str, str], ...]
    """(scope, tag, origin) per scope where the app has a decision."""


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

    def summary(self) -> str:
        c = self.counts
        return (
            f"Plan: {c[ChangeAction.CREATE]} to add, {c[ChangeAction.UPDATE]} to change, "
            f"{c[ChangeAction.DELETE]} to destroy."
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (also the saved plan file format)."""
        return {
            "format": PLAN_FORMAT,
            "base_revision": self.base_revision,
            "created_at": self.created_at.isoformat(),
            "policy_digest": self.policy_digest,
            "summary": {a.name.lower(): n for a, n in self.counts.items()},
            "desired_count": self.desired_count,
            "collapsed": self.collapsed,
            "changes": [_change_to_dict(c) for c in self.changes],
            "conflicts": [
                {
                    "domain": c.domain,
                    "scope": c.scope,
                    "app": c.app_id,
                    "action": c.action,
                    "sanctioned_apps": list(c.sanctioned_apps),
                    "origin": c.origin,
                    "resolution": c.resolution,
                    "resolved_at": c.resolved_at,
                }
                for c in self.conflicts
            ],
            "bucket_digests": {str(b): [d.digest, d.size] for b, d in self.bucket_digests.items()},
            "apps": [
                {
                    "id": a.app_id,
                    "name": a.name,
                    "category": a.category,
                    "risk": a.risk,
                    "tags": [list(t) for t in a.tags],
                }
                for a in self.apps
            ],
            "device_groups": [list(g) for g in self.device_groups],
            "impact": {app: dict(v) for app, v in self.impact.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """Read a saved plan; raises ValueError naming the bad field."""
        if not isinstance(data, Mapping):  # a plan file holding a JSON list, string or number
            raise ValueError(
                f"malformed plan file: a JSON object expected, not {type(data).__name__}"
            )
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"format: unsupported plan format {data.get('format')!r}")
        try:
            return cls(
                base_revision=int(data["base_revision"]),
                created_at=dt.datetime.fromisoformat(data["created_at"]),
                policy_digest=str(data.get("policy_digest", "")),
                desired_count=int(data.get("desired_count", 0)),
                collapsed=int(data.get("collapsed", 0)),
                changes=tuple(_change_from_dict(c) for c in data["changes"]),
                conflicts=tuple(
                    ConflictNote(
                        c["domain"],
                        c["scope"],
                        c["app"],
                        c["action"],
                        tuple(c["sanctioned_apps"]),
                        c["origin"],
                        c["resolution"],
                        c["resolved_at"],
                    )
                    for c in data.get("conflicts", [])
                ),
                bucket_digests={
                    int(b): BucketDigest(int(v[0]), int(v[1]))
                    for b, v in data["bucket_digests"].items()
                },
                apps=tuple(
                    AppState(
                        a["id"],
                        a["name"],
                        a["category"],
                        float(a["risk"]),
                        tuple((t[0], t[1], t[2]) for t in a["tags"]),
                    )
                    for a in data.get("apps", [])
                ),
                device_groups=tuple((g[0], g[1]) for g in data.get("device_groups", [])),
                impact={
                    str(a): {str(k): int(n) for k, n in v.items()}
                    for a, v in data.get("impact", {}).items()
                },
            )
        # AttributeError: a section of the wrong JSON type (a list where an object belongs);
        # OverflowError: int() of Infinity, which Python's json module reads.
        except (KeyError, TypeError, IndexError, AttributeError, OverflowError) as exc:
            raise ValueError(f"malformed plan file: {exc!r}") from exc


def indicator_to_dict(ind: Indicator) -> dict[str, Any]:
    """An indicator in the Defender Indicators API's field names."""
    return {
        "indicatorValue": ind.value,
        "indicatorType": ind.type,
        "action": ind.action.value,
        "severity": ind.severity.value,
        "title": ind.title,
        "description": ind.description,
        "expirationTime": ind.expiration.isoformat() if ind.expiration else None,
        "generateAlert": ind.generate_alert,
        "rbacGroupNames": [ind.scope] if ind.scope else [],
        "application": ind.app_id or None,
    }


def indicator_from_dict(data: Mapping[str, Any]) -> Indicator:
    """Inverse of `indicator_to_dict`."""
    groups = data.get("rbacGroupNames") or []
    expiration = data.get("expirationTime")
    return Indicator(
        value=data["indicatorValue"],
        type=data.get("indicatorType", "DomainName"),
        action=Action(data["action"]),
        severity=Severity(data["severity"]),
        title=data.get("title", ""),
        description=data.get("description", ""),
        expiration=dt.datetime.fromisoformat(expiration) if expiration else None,
        generate_alert=bool(data.get("generateAlert", False)),
        scope=groups[0] if groups else "",
        app_id=data.get("application") or "",
    )


def _change_to_dict(change: Change) -> dict[str, Any]:
    return {
        "action": change.action.value,
        "scope": change.key[0],
        "indicatorValue": change.key[1],
        "before": indicator_to_dict(change.before) if change.before else None,
        "after": indicator_to_dict(change.after) if change.after else None,
        "reason": change.reason,
    }


def _change_from_dict(data: Mapping[str, Any]) -> Change:
    return Change(
        action=ChangeAction(data["action"]),
        key=(data["scope"], data["indicatorValue"]),
        before=indicator_from_dict(data["before"]) if data.get("before") else None,
        after=indicator_from_dict(data["after"]) if data.get("after") else None,
        reason=data.get("reason", ""),
    )
