"""The saved plan file (`enforcer plan --out`, `enforcer apply PLANFILE`): a `Plan` as JSON.

Indicators appear in the Defender field names (`enforcer.wire.indicators`). A file is untrusted
input: `plan_from_dict` raises ValueError naming the bad field for anything malformed, never a
KeyError or TypeError from deep inside. A file is signed (``"mac"``: HMAC-SHA256 with the store's
plan-file key, `enforcer.store.plan_key`, over the rest of the content in canonical JSON), and
`read_plan_file` given the key refuses (`PlanFileSignatureError`) a file without a valid signature:
one made against another store, or edited by hand.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from enforcer.plan.digest import BucketDigest
from enforcer.plan.model import (
    AppState,
    Change,
    ChangeAction,
    ConflictNote,
    ExpiredEntry,
    Plan,
    ReviewNote,
)
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
                "custom_tags": list(a.custom_tags),
                "review": _review_to_dict(a.review),
            }
            for a in plan.apps
        ],
        "device_groups": [list(g) for g in plan.device_groups],
        "impact": {app: dict(v) for app, v in plan.impact.items()},
        "expired": [
            {"kind": e.kind, "subject": e.subject, "expires": e.expires, "origin": e.origin}
            for e in plan.expired
        ],
    }


class PlanFileSignatureError(ValueError):
    """A plan file whose signature is missing or does not match this store's key."""


def plan_to_json(plan: Plan, key: bytes | None = None) -> str:
    """The plan file's text, signed with `key` when given."""
    data = plan_to_dict(plan)
    if key is not None:
        data["mac"] = _mac(data, key)
    return json.dumps(data, indent=1, sort_keys=False)


def _mac(data: Mapping[str, Any], key: bytes) -> str:
    """HMAC-SHA256 of the content other than ``mac``, in a canonical JSON form."""
    content = {k: v for k, v in data.items() if k != "mac"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def verify_signature(data: object, key: bytes) -> None:
    """Raise PlanFileSignatureError unless `data` (a parsed plan file) is signed with `key`."""
    mac = data.get("mac") if isinstance(data, Mapping) else None
    if not isinstance(mac, str):
        raise PlanFileSignatureError(
            "the plan file is not signed: only a plan saved by `enforcer plan --out` against "
            "this store is applied"
        )
    assert isinstance(data, Mapping)
    if not hmac.compare_digest(mac, _mac(data, key)):
        raise PlanFileSignatureError(
            "the plan file's signature does not match: it was made against another store, or "
            "changed after `enforcer plan --out` saved it; run `enforcer plan --out` again"
        )


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
                    tuple(str(t) for t in a.get("custom_tags", [])),
                    _review_from_dict(a.get("review")),
                )
                for a in data.get("apps", [])
            ),
            device_groups=tuple((g[0], g[1]) for g in data.get("device_groups", [])),
            impact={
                str(a): {str(k): int(n) for k, n in v.items()}
                for a, v in data.get("impact", {}).items()
            },
            expired=tuple(
                ExpiredEntry(str(e["kind"]), str(e["subject"]), str(e["expires"]), str(e["origin"]))
                for e in data.get("expired", [])
            ),
        )
    # AttributeError: a section of the wrong JSON type (a list where an object belongs);
    # OverflowError: int() of Infinity, which Python's json module reads.
    except (KeyError, TypeError, IndexError, AttributeError, OverflowError) as exc:
        raise ValueError(f"malformed plan file: {exc!r}") from exc


def _review_to_dict(review: ReviewNote | None) -> dict[str, str] | None:
    if review is None:
        return None
    return {
        "owner": review.owner,
        "due": review.due,
        "note": review.note,
        "tag": review.tag,
        "origin": review.origin,
    }


def _review_from_dict(data: Any) -> ReviewNote | None:
    if data is None:
        return None
    return ReviewNote(
        str(data["owner"]), str(data["due"]), str(data["note"]), str(data["tag"]),
        str(data["origin"]),
    )  # fmt: skip


def write_plan_file(path: Path, plan: Plan, key: bytes | None = None) -> None:
    """Save `plan` to `path`, signed with `key` when given."""
    path.write_text(plan_to_json(plan, key))


def read_plan_file(path: Path, key: bytes | None = None) -> Plan:
    """A plan saved by `write_plan_file`; OSError if unreadable, ValueError if malformed, and
    PlanFileSignatureError (a ValueError) if `key` is given and the signature is not its."""
    data = json.loads(path.read_text())
    if key is not None:
        verify_signature(data, key)
    return plan_from_dict(data)


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
