"""The request that creates a manual indicator: the Defender fields with the API's checks.

The admin API takes it as JSON (``POST /api/v1/indicators``) and the console builds it from its
form; both then store `IndicatorCreate.to_indicator()`.
"""

from __future__ import annotations

import datetime as dt

from pydantic import Field, field_validator

from enforcer.catalog.model import normalize_domain
from enforcer.wire.indicators import DefenderIndicator
from enforcer.wire.limits import TITLE_MAX, GroupName


class IndicatorCreate(DefenderIndicator):
    """A manual indicator to create (Defender Indicators API field names)."""

    title: str = Field(default="Manual indicator", max_length=TITLE_MAX)
    rbacGroupNames: list[GroupName] = Field(default_factory=list, max_length=1)

    @field_validator("indicatorValue")
    @classmethod
    def _domain(cls, value: str) -> str:
        return normalize_domain(value)

    @field_validator("expirationTime")
    @classmethod
    def _future(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        if value <= dt.datetime.now(dt.UTC):
            raise ValueError("expirationTime is in the past")
        return value
