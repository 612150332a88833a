"""Enrolled devices as administrators see them: the JSON of the API's device list and of
`enforcer devices list --json` (never a token).

Where a device stands against the server's revisions comes from its sync requests (the ``since``
it asks with is the revision it holds); a device behind the newest revision for longer than the
``stale_after`` setting is stale.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from enforcer.store.devices import DeviceStatus


class DevicePublic(BaseModel):
    """An enrolled device as administrators see it."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True)

    device_id: str
    hostname: str
    os: str
    os_version: str
    agent_version: str
    user: str
    local_ips: list[str]
    groups: list[str]
    """The groups the server put the device in (their indicators reach it)."""
    requested_groups: list[str]
    """The groups the device asked for at enrolment (recorded, not granted)."""
    assigned_groups: list[str] | None
    """The groups an admin assigned (None: never), kept over re-enrolment."""
    enrolled_at: dt.datetime
    last_seen: dt.datetime
    """Updated at most once a minute."""
    identity_updated_at: dt.datetime | None
    """When the device last reported a change of its facts."""
    applied_revision: int | None
    """The revision the device holds, as its last sync request said (None: never synced)."""
    applied_at: dt.datetime | None
    """When the device first said it holds `applied_revision`."""
    time_to_enforce: float | None
    """Seconds from `applied_revision`'s creation to `applied_at`."""
    behind_since: dt.datetime | None
    """Since when the device lacks a newer revision (None: up to date)."""
    stale: bool
    """Behind for longer than the server's ``stale_after`` setting."""

    @classmethod
    def of(cls, status: DeviceStatus) -> DevicePublic:
        """The public view of a stored device (`DeviceStatus.as_json`, validated here)."""
        return cls.model_validate(status.as_json())


class DeviceList(BaseModel):
    """One page of devices and how many match."""

    value: list[DevicePublic]
    count: int
