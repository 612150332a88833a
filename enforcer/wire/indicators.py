"""Indicators on the wire: the Defender field names, and what a device receives by sync.

* `DefenderIndicator`: every field of an indicator, named as in the Defender for Endpoint
  Indicators API (indicatorValue, action, rbacGroupNames, ...). Saved plan files, the admin
  Indicators API and `enforcer indicators list --json` use it.
* `SyncEntry`, `SyncRemove` and `SyncBody`: the body of ``GET /api/v1/sync``, which carries the
  fields a device enforces with one ``scope`` per entry.

Each model is the one definition of its shape: its OpenAPI schema and its limits. A plan or a
snapshot can hold a million indicators, so the conversions on those paths are plain functions
next to the models (`to_defender`, `from_defender`, `sync_entry_json`, `from_sync_entry`) that
read and write the same JSON without validating each item; tests/wire/ checks that they agree
with the models.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, field_serializer

from enforcer.models import ALL_DEVICES, INDICATOR_TYPE_DOMAIN, Action, Indicator, Severity
from enforcer.wire.limits import APP_ID_MAX, DESCRIPTION_MAX, DOMAIN_MAX, TITLE_MAX


class DefenderIndicator(BaseModel):
    """An indicator in the Defender Indicators API's field names (one device group at most)."""

    indicatorValue: str = Field(max_length=DOMAIN_MAX)
    indicatorType: Literal["DomainName"] = "DomainName"
    action: Action
    severity: Severity = Severity.MEDIUM
    title: str = Field(default="", max_length=TITLE_MAX)
    description: str = Field(default="", max_length=DESCRIPTION_MAX)
    expirationTime: dt.datetime | None = None
    generateAlert: bool = False
    rbacGroupNames: list[str] = Field(default_factory=list)
    """The indicator's device group, or none for all devices."""
    application: str | None = Field(default=None, max_length=APP_ID_MAX)
    """The catalog app the indicator came from (null for a policy allow entry)."""

    @field_serializer("expirationTime")
    def _expiration_text(self, value: dt.datetime | None) -> str | None:
        # The text `to_defender` writes (an offset, not pydantic's "Z"): one form on every path.
        return value.isoformat() if value else None

    def to_indicator(self) -> Indicator:
        """The in-process record."""
        return from_defender(dict(self))


def to_defender(ind: Indicator) -> dict[str, Any]:
    """`ind` as a `DefenderIndicator` JSON object, built directly (plans hold a million)."""
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


def from_defender(data: Mapping[str, Any]) -> Indicator:
    """Inverse of `to_defender`; also takes a `DefenderIndicator`'s fields (datetime expiry).

    Raises KeyError or ValueError on a missing value or an unknown action or severity.
    """
    groups = data.get("rbacGroupNames") or []
    expiration = data.get("expirationTime")
    if expiration and not isinstance(expiration, dt.datetime):
        expiration = dt.datetime.fromisoformat(expiration)
    return Indicator(
        value=data["indicatorValue"],
        type=data.get("indicatorType", INDICATOR_TYPE_DOMAIN),
        action=Action(data["action"]),
        severity=Severity(data["severity"]),
        title=data.get("title", ""),
        description=data.get("description", ""),
        expiration=expiration or None,
        generate_alert=bool(data.get("generateAlert", False)),
        scope=groups[0] if groups else ALL_DEVICES,
        app_id=data.get("application") or "",
    )


class SyncEntry(BaseModel):
    """One indicator as a device receives it; a device enforces the strongest per domain."""

    indicatorValue: str = Field(max_length=DOMAIN_MAX)
    action: Action
    severity: Severity = Severity.MEDIUM
    scope: str = ALL_DEVICES
    """The device group it applies to; empty for every device."""
    application: str = Field(default="", max_length=APP_ID_MAX)
    generateAlert: bool = False
    title: str = Field(default="", max_length=TITLE_MAX)


class SyncRemove(BaseModel):
    """An indicator the device must drop."""

    indicatorValue: str = Field(max_length=DOMAIN_MAX)
    scope: str = ALL_DEVICES


EPOCH_PATTERN = r"^[0-9a-f]{32}\.[0-9a-z]{1,20}$"
"""What an epoch looks like: the store's lineage id, a dot, a stamp of the revision."""


class SyncBody(BaseModel):
    """A device's indicator set: the whole set (``snapshot``) or the changes since a revision."""

    revision: int
    epoch: str = Field(pattern=EPOCH_PATTERN)
    """Which history `revision` belongs to: a device sends it back (``epoch=``) with ``since``,
    and holding another epoch than the store's for that revision (the store was restored from
    a backup or renewed) gets it a snapshot."""
    snapshot: bool
    upserts: list[SyncEntry]
    removes: list[SyncRemove]
    """Always empty in a snapshot: what it does not list is gone."""


_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii


def sync_entry_json(
    value: str, scope: str, action: str, severity: str, app_id: str, alert: bool, title: str
) -> str:
    """A `SyncEntry` as JSON text, from store columns (once per row of a million-row snapshot:
    the text `json.dumps` would write, without building a dict)."""
    q = _quote
    return (
        f'{{"indicatorValue":{q(value)},"action":{q(action)},"severity":{q(severity)},'
        f'"scope":{q(scope)},"application":{q(app_id)},'
        f'"generateAlert":{"true" if alert else "false"},"title":{q(title)}}}'
    )


def sync_remove_json(scope: str, value: str) -> str:
    """A `SyncRemove` as JSON text."""
    return f'{{"indicatorValue":{_quote(value)},"scope":{_quote(scope)}}}'


def snapshot_head(revision: int, epoch: str) -> bytes:
    """The start of a snapshot body; `sync_entry_json` texts follow, comma-separated."""
    return b'{"revision":%d,"epoch":%s,"snapshot":true,"upserts":[' % (
        revision,
        _quote(epoch).encode(),
    )


SNAPSHOT_TAIL = b'],"removes":[]}'
"""The end of a snapshot body."""


def delta_body(revision: int, epoch: str, upserts: Iterable[str], removes: Iterable[str]) -> bytes:
    """A delta body from `sync_entry_json` and `sync_remove_json` texts."""
    return (
        f'{{"revision":{revision:d},"epoch":{_quote(epoch)},"snapshot":false,'
        f'"upserts":[{",".join(upserts)}],'
        f'"removes":[{",".join(removes)}]}}'
    ).encode()


def from_sync_entry(item: Mapping[str, Any]) -> Indicator:
    """A received `SyncEntry` (parsed JSON) as an `Indicator`; defaults fill absent fields.

    Raises KeyError, TypeError or ValueError on a malformed entry.
    """
    severity = item.get("severity") or Severity.MEDIUM
    return Indicator(
        value=str(item["indicatorValue"]),
        action=_ACTIONS[item["action"]],
        # The exact spelling first: a dict lookup, where `Severity.parse` walks the members.
        severity=_SEVERITIES.get(severity) or Severity.parse(severity),
        scope=item.get("scope") or ALL_DEVICES,
        title=item.get("title") or "",
        app_id=item.get("application") or "",
        generate_alert=bool(item.get("generateAlert", False)),
    )


_ACTIONS = {action.value: action for action in Action}
_SEVERITIES = {severity.value: severity for severity in Severity}


def sync_remove_key(item: Mapping[str, Any]) -> tuple[str, str]:
    """A received `SyncRemove` as the (scope, value) key it removes."""
    return (item.get("scope") or ALL_DEVICES, str(item["indicatorValue"]))
