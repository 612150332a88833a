"""The saved plan file (`enforcer plan --out`, `enforcer apply PLANFILE`): a `Plan` as JSON.

Indicators appear in the Defender field names (`enforcer.wire.indicators`). A file is untrusted
input: `plan_from_dict` raises ValueError naming the bad field for anything malformed, never a
KeyError or TypeError from deep inside.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from enforcer.plan.digest import BucketDigest
from enforcer.plan.model import AppState, Change, ChangeAction, ConflictNote, Plan
from enforcer.wire.indicators import from_defender, to_defender

PLAN_FORMAT = 1
"""Version of the file layout; a file of another version is refused."""


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """JSON-ready form of a plan (the plan file's content, and `--format json`)."""
    return {
        "format": PLAN_FORMAT,
        "base_revision": plan.base_revision,
        "created_at": plan.created_at.isoformat(),
        "policy_digest": plan.policy_digest,
        "summary": {a.name.lower(): n for a, n in plan.counts.items()},
        "desired_count": plan.desired_count,
        "collapsed": plan.collapsed,
        "changes": [_change_to_dict(c) for c in plan.changes],
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
            for c in plan.conflicts
        ],
        "bucket_digests": {str(b): [d.digest, d.size] for b, d in plan.bucket_digests.items()},
        "apps": [
            {
                "id": a.app_id,
                "name": a.name,
                "category": a.category,
                "risk": a.risk,
                "tags": [list(t) for t in a.tags],
            }
            for a in plan.apps
        ],
        "device_groups": [list(g) for g in plan.device_groups],
        "impact": {app: dict(v) for app, v in plan.impact.items()},
    }


def plan_to_json(plan: Plan) -> str:
    """The plan file's text."""
    return json.dumps(plan_to_dict(plan), indent=1, sort_keys=False)


def plan_from_dict(data: Mapping[str, Any]) -> Plan:
    """Read a saved plan; raises ValueError naming the bad field."""
    if not isinstance(data, Mapping):  # a plan file holding a JSON list, string or number
        raise ValueError(f"malformed plan file: a JSON object expected, not {type(data).__name__}")
    if data.get("format") != PLAN_FORMAT:
        raise ValueError(f"format: unsupported plan format {data.get('format')!r}")
    try:
        return Plan(
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


def write_plan_file(path: Path, plan: Plan) -> None:
    """Save `plan` to `path`."""
    path.write_text(plan_to_json(plan))


def read_plan_file(path: Path) -> Plan:
    """A plan saved by `write_plan_file`; OSError if unreadable, ValueError if malformed."""
    return plan_from_dict(json.loads(path.read_text()))


def _change_to_dict(change: Change) -> dict[str, Any]:
    return {
        "action": change.action.value,
        "scope": change.key[0],
        "indicatorValue": change.key[1],
        "before": to_defender(change.before) if change.before else None,
        "after": to_defender(change.after) if change.after else None,
        "reason": change.reason,
    }


def _change_from_dict(data: Mapping[str, Any]) -> Change:
    return Change(
        action=ChangeAction(data["action"]),
        key=(data["scope"], data["indicatorValue"]),
        before=from_defender(data["before"]) if data.get("before") else None,
        after=from_defender(data["after"]) if data.get("after") else None,
        reason=data.get("reason", ""),
    )
