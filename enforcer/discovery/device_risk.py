"""Device risk level from how far a device's recent activity departs from its own baseline (pure).

Inputs: the device's per-app daily usage over a *recent* window (the period a report shows: the
last day, the last 7 days ...) and a *baseline* window (the 30 days before that period), each
app's catalog risk score and sanction tag, and the blocked attempts in the period. Points, each
with the reason a person reads:

===============================================  ======  ==========================================
signal                                           points  reason shown
===============================================  ======  ==========================================
an app with risk >= 7 used recently, never in    3 each  "new risky app deepseek (risk 8.5)"
the baseline                                     (max 6)
upload to an app on a day of the period >= 10x   3       "upload 14x its 30-day median to mega.nz"
its baseline daily median (and >= 10 MB)
... >= 5x (and >= 10 MB)                         2
traffic to unsanctioned apps recently            2       "traffic to unsanctioned mega (3 requests)"
blocked attempts recently: >= 1 / >= 20          1 / 2   "37 blocked attempts"
===============================================  ======  ==========================================

Level: 0-2 low, 3-5 medium, 6 or more high. A new device has an empty baseline: its apps are all
"new", so only risky ones count, and the upload ratio is measured against zero as "no baseline".
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

RISKY_APP = 7.0
MIN_UPLOAD = 10 * 1024 * 1024


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class DeviceAppDay:
    """A device's use of one app on one day."""

    day: int
    app_id: str
    transactions: int
    bytes_up: int
    bytes_down: int
    blocked: int = 0


@dataclass(frozen=True)
class DeviceRisk:
    level: RiskLevel
    score: int
    reasons: tuple[str, ...] = field(default=())


def _level(score: int) -> RiskLevel:
    if score >= 6:
        return RiskLevel.HIGH
    if score >= 3:
        return RiskLevel.MEDIUM
    return RiskLevel.LOW


def _mb(n: float) -> str:
    return f"{n / 1024 / 1024:.0f} MB"


def device_risk(
    history: Sequence[DeviceAppDay],
    *,
    recent_from: int,
    app_scores: Mapping[str, float],
    unsanctioned: frozenset[str] | set[str],
    blocked_recent: int = 0,
    baseline_days: int = 30,
) -> DeviceRisk:
    """Risk of one device: `history` holds its per-app days; days >= `recent_from` are recent."""
    baseline = [h for h in history if recent_from - baseline_days <= h.day < recent_from]
    recent = [h for h in history if h.day >= recent_from]
    points = 0
    reasons: list[str] = []

    seen_before = {h.app_id for h in baseline}
    new_risky = sorted(
        {
            h.app_id
            for h in recent
            if h.app_id not in seen_before and app_scores.get(h.app_id, 0) >= RISKY_APP
        }
    )
    if new_risky:
        gained = min(6, 3 * len(new_risky))
        points += gained
        names = ", ".join(f"{a} (risk {app_scores[a]:.1f})" for a in new_risky)
        reasons.append(f"new risky app{'s' if len(new_risky) > 1 else ''} {names}: +{gained}")

    upload_points, upload_reason = _upload_signal(baseline, recent, baseline_days, recent_from)
    if upload_points:
        points += upload_points
        reasons.append(f"{upload_reason}: +{upload_points}")

    unsanctioned_hits: dict[str, int] = {}
    for h in recent:
        if h.app_id in unsanctioned:
            unsanctioned_hits[h.app_id] = unsanctioned_hits.get(h.app_id, 0) + h.transactions
    if unsanctioned_hits:
        points += 2
        listed = ", ".join(f"{a} ({n} requests)" for a, n in sorted(unsanctioned_hits.items()))
        reasons.append(f"traffic to unsanctioned {listed}: +2")

    if blocked_recent:
        gained = 2 if blocked_recent >= 20 else 1
        points += gained
        reasons.append(
            f"{blocked_recent} blocked attempt{'s' if blocked_recent > 1 else ''}: +{gained}"
        )
    return DeviceRisk(_level(points), points, tuple(reasons))


def _upload_signal(
    baseline: Sequence[DeviceAppDay],
    recent: Sequence[DeviceAppDay],
    baseline_days: int,
    recent_from: int,
) -> tuple[int, str]:
    per_app_days: dict[str, dict[int, int]] = {}
    for h in baseline:
        per_app_days.setdefault(h.app_id, {})
        per_app_days[h.app_id][h.day] = per_app_days[h.app_id].get(h.day, 0) + h.bytes_up
    # The period's busiest day per app: a spike stays a spike in a 30-day report.
    day_up: dict[tuple[str, int], int] = {}
    for h in recent:
        day_up[(h.app_id, h.day)] = day_up.get((h.app_id, h.day), 0) + h.bytes_up
    recent_up: dict[str, int] = {}
    for (app_id, _), uploaded in day_up.items():
        recent_up[app_id] = max(recent_up.get(app_id, 0), uploaded)
    best = (0, "")
    for app_id, uploaded in recent_up.items():
        if uploaded < MIN_UPLOAD:
            continue
        days = per_app_days.get(app_id, {})
        daily = [days.get(d, 0) for d in range(recent_from - baseline_days, recent_from)]
        median = statistics.median(daily) if daily else 0
        if median <= 0:
            candidate = (
                3,
                f"upload of {_mb(uploaded)} to {app_id} with no upload in its {baseline_days}-day baseline",
            )
        else:
            ratio = uploaded / median
            if ratio >= 10:
                candidate = (3, f"upload {ratio:.0f}x its {baseline_days}-day median to {app_id}")
            elif ratio >= 5:
                candidate = (2, f"upload {ratio:.0f}x its {baseline_days}-day median to {app_id}")
            else:
                continue
        if candidate[0] > best[0]:
            best = candidate
    return best
