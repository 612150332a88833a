"""`GET /api/v1/devices`: the enrolled devices, for administrators (never their tokens)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from enforcer.api.deps import MAX_INT64, Admin, Ctx
from enforcer.store.devices import Device, count_devices, list_devices

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


class DevicePublic(BaseModel):
    """An enrolled device as administrators see it."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True)

    device_id: str
    hostname: str
    os: str
    user: str
    local_ips: list[str]
    groups: list[str]
    enrolled_at: dt.datetime
    last_seen: dt.datetime
    """Updated at most once a minute."""

    @classmethod
    def of(cls, device: Device) -> DevicePublic:
        """The public view of a stored device."""
        return cls(
            device_id=device.device_id,
            hostname=device.hostname,
            os=device.os,
            user=device.user,
            local_ips=list(device.local_ips),
            groups=list(device.groups),
            enrolled_at=device.enrolled_at,
            last_seen=device.last_seen,
        )


class DeviceList(BaseModel):
    """One page of devices and how many are enrolled."""

    value: list[DevicePublic]
    count: int


@router.get("", response_model=DeviceList, summary="List enrolled devices (paged)")
def list_(
    _admin: Admin,
    ctx: Ctx,
    top: Annotated[int, Query(ge=1, le=10_000)] = 100,
    skip: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0,
) -> DeviceList:
    """Enrolled devices in id order."""
    with ctx.engine.connect() as conn:
        total = count_devices(conn)
        page = list_devices(conn, limit=top, offset=skip)
    return DeviceList(value=[DevicePublic.of(d) for d in page], count=total)
