"""Device enrolment: a device proves it knows the enrolment secret once, and gets its own token."""

from __future__ import annotations

import hmac
import math
from typing import Annotated

import structlog
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from starlette.concurrency import run_in_threadpool

from enforcer.api.deps import Ctx
from enforcer.api.problems import fail
from enforcer.store.devices import enroll_device
from enforcer.wire.limits import DEVICE_ID_MAX, HOSTNAME_MAX, IP_MAX, OS_MAX, USER_MAX, GroupName

log = structlog.get_logger("enforcer.api")
router = APIRouter(prefix="/api/v1", tags=["devices"])

DeviceId = Annotated[
    str, Field(min_length=1, max_length=DEVICE_ID_MAX, pattern=r"^[A-Za-z0-9._-]+$")
]


class _Camel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True
    )


class EnrollRequest(_Camel):
    """What a device says about itself when it enrols."""

    enroll_secret: str = Field(max_length=1024)
    device_id: DeviceId
    hostname: str = Field(default="", max_length=HOSTNAME_MAX)
    os: str = Field(default="", max_length=OS_MAX)
    user: str = Field(default="", max_length=USER_MAX)
    local_ips: list[Annotated[str, Field(max_length=IP_MAX)]] = Field(
        default_factory=list, max_length=32
    )
    groups: list[GroupName] = Field(default_factory=list, max_length=32)


class EnrollResponse(_Camel):
    """The device's token: shown once, stored by the server only as a hash."""

    device_id: str
    device_token: str
    groups: list[str]


@router.post(
    "/enroll", status_code=201, response_model=EnrollResponse, response_model_by_alias=True
)
async def enroll(body: EnrollRequest, request: Request, ctx: Ctx) -> EnrollResponse:
    """Enrol (or re-enrol) a device; re-enrolling rotates its token."""
    client = request.client.host if request.client else "unknown"
    wait = ctx.enroll_limiter.take(client)
    if wait > 0:
        raise fail(
            429, "too many enrolment attempts; retry later", {"Retry-After": str(math.ceil(wait))}
        )
    secret = body.enroll_secret.encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(secret, ctx.enroll_secret):
        log.warning("enroll_refused", client=client, device_id=body.device_id)
        raise fail(401, "wrong enrolment secret")
    device, token = await run_in_threadpool(
        lambda: enroll_device(
            ctx.engine,
            device_id=body.device_id,
            hostname=body.hostname,
            os=body.os,
            user=body.user,
            local_ips=body.local_ips,
            groups=body.groups,
        )
    )
    ctx.forget_device(device.device_id)  # its previous token stops working here at once
    log.info(
        "device_enrolled",
        device_id=device.device_id,
        hostname=device.hostname,
        groups=list(device.groups),
    )
    return EnrollResponse(
        device_id=device.device_id, device_token=token, groups=list(device.groups)
    )
