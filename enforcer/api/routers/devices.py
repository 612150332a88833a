"""Devices over HTTP: the enrolled devices for administrators (never their tokens), and
``PUT /api/v1/devices/self``, where a device reports a change of its own facts.

Where a device stands against the server's revisions comes from its sync requests (the ``since``
it asks with is the revision it holds, recorded by the sync route); a device behind the newest
revision for longer than the ``stale_after`` setting is listed as stale.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from starlette.concurrency import run_in_threadpool

from enforcer.api.deps import MAX_INT64, Admin, Ctx, CurrentDevice
from enforcer.store.devices import DeviceStatus, count_devices, list_devices, update_facts
from enforcer.wire.enrolment import DeviceFacts

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


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
        """The public view of a stored device."""
        device = status.device
        took = status.time_to_enforce
        return cls(
            device_id=device.device_id,
            hostname=device.hostname,
            os=device.os,
            os_version=device.os_version,
            agent_version=device.agent_version,
            user=device.user,
            local_ips=list(device.local_ips),
            groups=list(device.groups),
            enrolled_at=device.enrolled_at,
            last_seen=device.last_seen,
            identity_updated_at=device.identity_updated_at,
            applied_revision=device.applied_revision,
            applied_at=device.applied_at,
            time_to_enforce=None if took is None else took.total_seconds(),
            behind_since=status.behind_since,
            stale=status.stale,
        )


class DeviceList(BaseModel):
    """One page of devices and how many match."""

    value: list[DevicePublic]
    count: int


@router.get("", response_model=DeviceList, summary="List enrolled devices (paged)")
def list_(
    _admin: Admin,
    ctx: Ctx,
    top: Annotated[int, Query(ge=1, le=10_000)] = 100,
    skip: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0,
    q: Annotated[
        str | None, Query(max_length=255, description="Part of the hostname or device id.")
    ] = None,
    stale: Annotated[bool, Query(description="Only the devices listed as stale.")] = False,
) -> DeviceList:
    """Enrolled devices in hostname order, with the revision each holds and whether it is stale."""
    after = dt.timedelta(seconds=ctx.settings.stale_after)
    now = dt.datetime.now(dt.UTC)
    with ctx.engine.connect() as conn:
        total = count_devices(conn, stale_after=after, now=now, search=q, stale_only=stale)
        page = list_devices(
            conn, stale_after=after, now=now, search=q, stale_only=stale, limit=top, offset=skip
        )
    return DeviceList(value=[DevicePublic.of(d) for d in page], count=total)


@router.put(
    "/self",
    status_code=204,
    summary="A device reports its hostname, OS, agent version, user and addresses",
    responses={204: {"description": "Recorded (or unchanged)"}},
)
async def put_self(body: DeviceFacts, device: CurrentDevice, ctx: Ctx) -> Response:
    """The calling device's facts; sent by the shim at start and whenever one of them changes."""
    await run_in_threadpool(
        lambda: update_facts(
            ctx.engine,
            device.device_id,
            hostname=body.hostname,
            os=body.os,
            os_version=body.os_version,
            agent_version=body.agent_version,
            user=body.user,
            local_ips=body.local_ips,
        )
    )
    return Response(status_code=204)
