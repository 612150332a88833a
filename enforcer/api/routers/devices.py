"""Devices over HTTP: the enrolled devices for administrators (never their tokens; the shape is
`enforcer.web.devices.DevicePublic`), and ``PUT /api/v1/devices/self``, where a device reports a
change of its own facts.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import structlog
from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from enforcer.api.deps import MAX_INT64, Admin, Ctx, CurrentDevice
from enforcer.api.problems import fail
from enforcer.store.devices import assign_groups, count_devices, list_devices, update_facts
from enforcer.store.trust import approve_device
from enforcer.web.devices import DeviceList, DevicePublic
from enforcer.wire.enrolment import DeviceFacts, GroupAssignment

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])
log = structlog.get_logger("enforcer.api")


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


@router.put(
    "/{device_id}/groups",
    status_code=204,
    summary="An admin puts a device in exactly these device groups",
    responses={204: {"description": "Assigned"}, 404: {"description": "No such device"}},
)
async def put_groups(device_id: str, body: GroupAssignment, admin: Admin, ctx: Ctx) -> Response:
    """The device's groups from now on, kept over its re-enrolments (the device cannot choose
    its own; see `enforcer.api.groups`). Its next sync request is answered for them."""
    device = await run_in_threadpool(
        lambda: assign_groups(ctx.engine, device_id, body.groups, actor=admin)
    )
    if device is None:
        raise fail(404, f"no device {device_id!r}")
    ctx.forget_device(device_id)  # its cached token entry held the old groups
    log.info("device_groups_assigned", device_id=device_id, groups=list(device.groups))
    return Response(status_code=204)


@router.post(
    "/{device_id}/approve",
    status_code=204,
    summary="An admin trusts a device's hostname (discovery merges it with the log machine)",
    responses={204: {"description": "Approved"}, 404: {"description": "No such device"}},
)
async def approve(device_id: str, admin: Admin, ctx: Ctx) -> Response:
    """From the next roll-up on, the device's traffic counts under its bare hostname, together
    with uploaded logs of that hostname (`enforcer.store.trust`); before, it is the machine
    ``hostname (device ID)``. Kept over its re-enrolments."""
    if not await run_in_threadpool(lambda: approve_device(ctx.engine, device_id, actor=admin)):
        raise fail(404, f"no device {device_id!r}")
    log.info("device_approved", device_id=device_id)
    return Response(status_code=204)
