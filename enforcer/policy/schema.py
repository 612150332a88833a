"""The policy file format (version 1) as pydantic models; `policy.schema.json` is generated from it.

A policy file is a YAML mapping with any of these sections::

    version: 1
    device_groups: [{name, description}]
    schedules:   [{name, timezone, windows: [{days?, from, to}]}]
    defaults: {unsanctioned: {action, severity, generate_alert}, monitored: {...}}
    apps:        [{app, tag, action?, severity?, generate_alert?, scope?, schedule?, reason?,
                   tags?, review?: {owner, due, note?}}]
    rules:       [{name, category?, min_risk?, max_risk?, tagged?, except_tagged?, tag, except?,
                   action?, ..., schedule?}]
    exceptions:  [{app, tag?, scope?, schedule?, expires, reason}]
    allow:       [{domain, scope?, expires?, reason?}]
    conflicts:   [{domain, resolve: block | allow, reason?}]
    custom_apps: [catalog App entries]
    alert_policies: [{name, when, min_risk?, factor?, per?, min_upload?, apps?, severity, scope?}]

Precedence for one app in one scope: an unexpired exception, then an explicit ``apps`` entry, then
the first matching rule (files in name order, rules in file order). An entry with a `schedule`
takes part only inside its schedule's windows. An ``apps`` entry whose tag is a review state
(``unreviewed``, ``in-review``) decides nothing: the rules decide that app as if the entry were not
written. Custom tags (``tags: [approved-for-finance]``) label apps for rules and reports. See
docs/policy.md.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from enforcer.catalog import App
from enforcer.models import SANCTION_TAGS, Tag
from enforcer.wire.limits import HOSTNAME_MAX, GroupName

PolicyAction = Literal["block", "warn", "audit", "alert"]
SeverityWord = Literal["informational", "low", "medium", "high"]
AppId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceGroup(_Strict):
    """A named set of devices that indicators can be scoped to (Defender's device group)."""

    name: GroupName
    description: str = ""
    hostnames: list[Annotated[str, Field(min_length=1, max_length=HOSTNAME_MAX)]] = []
    """Hostname patterns (``fnmatch``, case-insensitive: ``eng-*``) of the devices that are
    in the group: the server puts a device whose hostname matches one in the group when it
    enrols (the device cannot choose)."""


Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""The days in ``datetime.weekday()`` order."""
ScheduleName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
_CLOCK = re.compile(r"^([01][0-9]|2[0-4]):([0-5][0-9])$")


def clock_minutes(value: str) -> int:
    """``"09:30"`` as 570 minutes after midnight; ``"24:00"`` (the end of the day) is 1440."""
    found = _CLOCK.match(value)
    if found is None:
        raise ValueError(f"{value!r} is not a time of day written HH:MM")
    minutes = int(found[1]) * 60 + int(found[2])
    if minutes > 24 * 60:
        raise ValueError(f"{value!r} is after 24:00")
    return minutes


class Window(_Strict):
    """Local times of some days of the week: from `from` on each listed day to `to`, the next
    day's when `to` is not after `from` (``from: "22:00"``, ``to: "06:00"``)."""

    days: list[Day] = Field(default_factory=lambda: list(DAYS), min_length=1)
    """The days a window starts on; every day when left out."""
    from_: str = Field(alias="from", json_schema_extra={"pattern": _CLOCK.pattern})
    """``HH:MM``, local time in the schedule's time zone."""
    to: str = Field(json_schema_extra={"pattern": _CLOCK.pattern})
    """``HH:MM``; ``"24:00"`` is the end of the day."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("from_", "to")
    @classmethod
    def _clock(cls, value: str) -> str:
        clock_minutes(value)
        return value

    @model_validator(mode="after")
    def _times(self) -> Window:
        start, end = clock_minutes(self.from_), clock_minutes(self.to)
        if start == 24 * 60:
            raise ValueError("from cannot be 24:00 (write 00:00 on the next day)")
        if start == end:
            raise ValueError(
                "from and to are equal: an empty window (a whole day is 00:00 to 24:00)"
            )
        return self


class Schedule(_Strict):
    """A named set of weekly windows in a time zone; app entries, rules and exceptions that
    name it are enforced only inside its windows."""

    name: ScheduleName
    timezone: str = Field(min_length=1)
    """An IANA zone (``Europe/Berlin``): daylight saving time follows the zone's rules."""
    windows: list[Window] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name such as Europe/Berlin or UTC)"
            ) from exc
        return value


def _not_builtin(value: str) -> str:
    if value in {t.value for t in Tag}:
        raise ValueError(f"{value!r} is a built-in tag: a custom tag needs a name of its own")
    return value


CustomTag = Annotated[
    str,
    Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64),
    AfterValidator(_not_builtin),
]
"""An organisation's own label for apps (``approved-for-finance``): lower-case words and
hyphens, never one of the built-in tags."""


def _sanction(tag: Tag) -> Tag:
    if tag.is_review:
        words = ", ".join(t.value for t in SANCTION_TAGS)
        raise ValueError(
            f"{tag.value!r} is a review state, which only an apps entry can give: "
            f"use one of {words}"
        )
    return tag


SanctionTag = Annotated[Tag, AfterValidator(_sanction)]
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


class Review(_Strict):
    """Who is reviewing an app, by when, and what is being looked at."""

    owner: str = Field(min_length=1, max_length=128)
    """The person (or team) deciding: a name or an e-mail address."""
    due: dt.date = Field(json_schema_extra={"pattern": _ISO_DATE.pattern})
    """The date the decision is due, written ``YYYY-MM-DD``; after it the review is overdue."""
    note: str = Field(default="", max_length=2000)

    @field_validator("due", mode="before")
    @classmethod
    def _iso_date(cls, value: object) -> dt.date:
        text = value.isoformat() if isinstance(value, dt.date) else value
        if not isinstance(text, str) or not _ISO_DATE.match(text):
            raise ValueError(
                f"{text!s} is not a date written YYYY-MM-DD (ISO 8601), such as 2026-12-31"
            )
        try:
            return dt.date.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"{text} is not a date: {exc}") from exc


class TagDefaults(_Strict):
    """What a tag turns into when an entry does not say."""

    action: PolicyAction
    severity: SeverityWord = "medium"
    generate_alert: bool = False


def _default_unsanctioned() -> TagDefaults:
    return TagDefaults(action="block", severity="medium")


def _default_monitored() -> TagDefaults:
    return TagDefaults(action="audit", severity="informational")


class Defaults(_Strict):
    """Organisation-wide defaults; at most one file of the set may declare them."""

    unsanctioned: TagDefaults = Field(default_factory=_default_unsanctioned)
    monitored: TagDefaults = Field(default_factory=_default_monitored)


class _Enforcement(_Strict):
    action: PolicyAction | None = None
    """Overrides the tag's default action."""
    severity: SeverityWord | None = None
    generate_alert: bool | None = None
    scope: list[GroupName] = Field(default_factory=list)
    """Device groups the entry applies to; empty means every device."""
    schedule: ScheduleName | None = None
    """A schedule's name: the entry is enforced only inside its windows."""
    reason: str = ""


class AppEntry(_Enforcement):
    """An explicit tag for one catalog (or custom) app, its custom tags, and its review."""

    app: AppId
    tag: Tag
    tags: list[CustomTag] = Field(default_factory=list)
    """Custom tags of the app (``approved-for-finance``), for rules and reports; they label
    the app itself, whatever the entry's scope or schedule."""
    review: Review | None = None
    """Required with ``tag: in-review``; with a sanction tag it says the decision is being
    reconsidered (the tag stays in force meanwhile)."""

    @model_validator(mode="after")
    def _review_fields(self) -> AppEntry:
        if self.tag is Tag.IN_REVIEW and self.review is None:
            raise ValueError("tag: in-review needs a review: {owner, due, note}")
        if self.tag is Tag.UNREVIEWED and self.review is not None:
            raise ValueError("tag: unreviewed cannot have a review (write tag: in-review)")
        if self.tag.is_review:
            for name in ("action", "severity", "generate_alert", "schedule"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"{name} does not apply to tag: {self.tag.value} "
                        "(a review state enforces nothing)"
                    )
            if self.scope:
                raise ValueError(
                    f"tag: {self.tag.value} is for the app on every device: leave out scope"
                )
        return self


class Rule(_Enforcement):
    """Tag every app that matches a category and/or a risk range, except the listed apps."""

    name: str = Field(min_length=1)
    category: list[str] | str | None = None
    min_risk: float | None = Field(default=None, ge=0, le=10)
    max_risk: float | None = Field(default=None, ge=0, le=10)
    tagged: list[CustomTag] = Field(default_factory=list)
    """Only apps with at least one of these custom tags."""
    except_tagged: list[CustomTag] = Field(default_factory=list)
    """Not apps with any of these custom tags."""
    tag: SanctionTag
    except_: list[AppId] = Field(default_factory=list, alias="except")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def categories(self) -> tuple[str, ...]:
        if self.category is None:
            return ()
        return (self.category,) if isinstance(self.category, str) else tuple(self.category)


class Exception_(_Strict):
    """A time-limited exception: an app gets another tag for some scope until `expires`."""

    app: AppId
    tag: SanctionTag = Tag.SANCTIONED
    scope: list[GroupName] = Field(default_factory=list)
    schedule: ScheduleName | None = None
    """A schedule's name: the exception holds only inside its windows (until `expires`)."""
    expires: dt.datetime
    reason: str = Field(min_length=1)

    @field_validator("expires")
    @classmethod
    def _utc(cls, value: dt.datetime) -> dt.datetime:
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class AllowEntry(_Strict):
    """A domain that is always allowed, even under a blocked parent."""

    domain: str = Field(min_length=1)
    scope: list[GroupName] = Field(default_factory=list)
    expires: dt.datetime | None = None
    reason: str = ""

    @field_validator("expires")
    @classmethod
    def _utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        return value if value is None or value.tzinfo else value.replace(tzinfo=dt.UTC)


class ConflictResolution(_Strict):
    """Explicit decision for a domain shared by a sanctioned app and a blocked one."""

    domain: str = Field(min_length=1)
    resolve: Literal["block", "allow"]
    reason: str = ""


AlertWhen = Literal["new_app", "upload_spike", "device_high_risk", "blocked_app"]

_ALERT_FIELDS: dict[str, tuple[str, ...]] = {
    "new_app": ("min_risk",),
    "upload_spike": ("factor", "per", "min_upload"),
    "device_high_risk": (),
    "blocked_app": (),
}
"""The optional fields each kind of alert policy reads (any other is refused as a mistake)."""


class AlertPolicy(_Strict):
    """When Cloud Discovery raises an alert: after each roll-up the daemon checks every alert
    policy against what was rolled up, and keeps one open alert per (policy, machine, user, app)
    with a count and a last-seen time."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
    when: AlertWhen
    """``new_app``: an app seen for the first time with a risk score of at least `min_risk`;
    ``upload_spike``: a machine's (or user's) upload to an app in a day over `factor` times its
    median of the 30 days before; ``device_high_risk``: a machine turning high risk;
    ``blocked_app``: a device hit a blocked app."""
    severity: SeverityWord = "medium"
    scope: list[GroupName] = Field(default_factory=list)
    """Device groups whose machines it watches; empty means every machine."""
    apps: list[AppId] = Field(default_factory=list)
    """Only these apps (empty: every app)."""
    min_risk: float | None = Field(default=None, ge=0, le=10)
    factor: float | None = Field(default=None, gt=1)
    per: Literal["device", "user"] | None = None
    """What an upload spike is measured on: each machine's or each user's upload to the app."""
    min_upload: int | None = Field(default=None, ge=0)
    """Bytes a day's upload must reach to be a spike at all (default 10 MB): a median of a few
    bytes would otherwise make any upload a spike."""
    reason: str = ""

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> AlertPolicy:
        allowed = _ALERT_FIELDS[self.when]
        for name in ("min_risk", "factor", "per", "min_upload"):
            if getattr(self, name) is not None and name not in allowed:
                raise ValueError(f"{name} does not apply to when: {self.when}")
        if self.when == "new_app" and self.min_risk is None:
            raise ValueError(
                "when: new_app needs min_risk (alert on new apps at this risk or above)"
            )
        if self.when == "upload_spike" and self.factor is None:
            raise ValueError("when: upload_spike needs factor (times the 30-day median)")
        return self


class PolicyFile(_Strict):
    """One policy file. Every section is optional."""

    version: Literal[1] = 1
    device_groups: list[DeviceGroup] = Field(default_factory=list)
    schedules: list[Schedule] = Field(default_factory=list)
    defaults: Defaults | None = None
    apps: list[AppEntry] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    exceptions: list[Exception_] = Field(default_factory=list)
    allow: list[AllowEntry] = Field(default_factory=list)
    conflicts: list[ConflictResolution] = Field(default_factory=list)
    custom_apps: list[App] = Field(default_factory=list)
    alert_policies: list[AlertPolicy] = Field(default_factory=list)


def json_schema() -> dict[str, object]:
    """The JSON Schema of a policy file, for editor completion and CI validation."""
    schema = PolicyFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Enforcer policy file"
    return schema
