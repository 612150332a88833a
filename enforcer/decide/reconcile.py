"""reconcile(desired, actual) -> Plan: the pure heart of Enforcer (no I/O, no clock).

`actual` holds the store's per-bucket digests and the managed indicators of the buckets whose
digests differ from the desired ones (`enforcer.store` reads exactly those). Buckets with equal
digests are equal and are skipped, which keeps a no-op plan over a million indicators cheap.
Manual indicators are never part of `actual`, so reconciliation never touches them.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import attrgetter

from enforcer.decide.expand import DesiredState
from enforcer.models import Indicator
from enforcer.plan.digest import (
    BucketDigest,
    DesiredDigest,
    Key,
    bucket_of,
    digest_indicators,
    dirty_buckets,
    keys_in_buckets,
)
from enforcer.plan.model import ActualState, Change, ChangeAction, ConflictNote, Plan


def reconcile(
    desired: DesiredState, actual: ActualState, digest: DesiredDigest | None = None
) -> Plan:
    """The changes that turn the store's managed indicators into the desired set."""
    digest = digest or digest_indicators(desired.indicators.values())
    dirty = dirty_buckets(digest.buckets, actual.digests)
    if actual.loaded is not None and not dirty <= actual.loaded:
        missing = sorted(dirty - actual.loaded)[:5]
        raise ValueError(f"reconcile needs the store rows of buckets {missing}...")
    actual_by_bucket: dict[int, list[Key]] = {}
    for key in actual.rows:
        actual_by_bucket.setdefault(bucket_of(*key), []).append(key)

    reasons: dict[tuple[str, str], str] = {}
    by_app: dict[str, list[Change]] = {}
    wanted = desired.indicators
    if not actual.digests:
        # An empty store: every desired key is a create; no need to group keys by bucket.
        members = {0: list(wanted)}
        dirty_order: Iterable[int] = (0,)
    else:
        members = keys_in_buckets(wanted.keys(), dirty)
        dirty_order = dirty
    rows = actual.rows
    create, update = ChangeAction.CREATE, ChangeAction.UPDATE
    for bucket in dirty_order:
        # The loop below runs a million times on a first apply: lookups are inlined.
        for key in members.get(bucket, ()):
            after = wanted[key]
            before = rows.get(key)
            if before is not None and before == after:
                continue
            app_id = after.app_id
            why_key = (app_id, after.scope) if app_id else key
            why = reasons.get(why_key)
            if why is None:
                why = reasons[why_key] = _reason(desired, after)
            change = Change(create if before is None else update, key, before, after, why)
            group = by_app.get(app_id)
            if group is None:
                by_app[app_id] = [change]
            else:
                group.append(change)
        for key in actual_by_bucket.get(bucket, ()):
            if key not in wanted:
                before = rows[key]
                gone = Change(ChangeAction.DELETE, key, before, None, _gone(desired, before))
                by_app.setdefault(before.app_id, []).append(gone)
    changes: list[Change] = []
    for app_id in sorted(by_app):
        group = by_app[app_id]
        group.sort(key=_BY_KEY)  # within an app: all devices first, then each group; by domain
        changes.extend(group)
    return Plan(
        base_revision=actual.revision,
        changes=tuple(changes),
        conflicts=tuple(
            ConflictNote(
                domain=c.domain,
                scope=c.scope,
                app_id=c.app_id,
                action=c.action.value,
                sanctioned_apps=c.sanctioned_apps,
                origin=str(c.origin),
                resolution=c.resolution,
                resolved_at=str(c.resolved_at) if c.resolved_at else None,
            )
            for c in desired.conflicts
        ),
        bucket_digests={b: digest.buckets.get(b, BucketDigest(0, 0)) for b in dirty},
        policy_digest=desired.policy_digest,
        collapsed=desired.collapsed,
        desired_count=len(wanted),
        apps=desired.apps,
        device_groups=desired.device_groups,
        expired=desired.expired,
    )


_BY_KEY = attrgetter("key")


def _reason(desired: DesiredState, after: Indicator) -> str:
    origin, how = desired.origin_of(after)
    return f"{how} ({origin})" if origin else how


def _gone(desired: DesiredState, before: Indicator) -> str:
    """Why an indicator goes: the entry that now tags its app (sanctioned, say), if any."""
    if before.app_id:
        decision = desired.decisions.get((before.app_id, before.scope))
        if decision is not None:
            return f"app {before.app_id} is now {decision.tag.value} by {decision.reason} ({decision.origin})"
        return f"app {before.app_id} is no longer governed here by any policy"
    return "no longer in any policy allow entry"
