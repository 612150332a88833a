"""Device enrolment: a device proves it knows the enrolment secret once, and gets its own token."""

from __future__ import annotations

import math

import structlog
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from enforcer.api.deps import Ctx, client_address
from enforcer.api.problems import fail
from enforcer.store.devices import enroll_device
from enforcer.store.trust import record_enrolment_trust
from enforcer.wire.enrolment import EnrollRequest, EnrollResponse

log = structlog.get_logger("enforcer.api")
router = APIRouter(prefix="/api/v1", tags=["devices"])


@router.post(
    "/enroll", status_code=201, response_model=EnrollResponse, response_model_by_alias=True
)
async def enroll(body: EnrollRequest, request: Request, ctx: Ctx) -> EnrollResponse:
    """Enrol (or re-enrol) a device; re-enrolling rotates its token."""
    client = client_address(request, ctx)
    wait = ctx.enroll_limiter.take(client)
    if wait > 0:
        raise fail(
            429, "too many enrolment attempts; retry later", {"Retry-After": str(math.ceil(wait))}
        )
    secret = body.enroll_secret.encode("utf-8", "surrogateescape")
    secret_groups = ctx.groups.secret_groups(secret)
    if secret_groups is None:
        log.warning("enroll_refused", client=client, device_id=body.device_id)
        raise fail(401, "wrong enrolment secret")
    # The server decides the groups; what the device asked for is recorded only.
    granted = await run_in_threadpool(
        lambda: ctx.groups.decide(
            secret_groups=secret_groups, hostname=body.hostname, requested=body.groups
        )
    )
    device, token = await run_in_threadpool(
        lambda: enroll_device(
            ctx.engine,
            device_id=body.device_id,
            hostname=body.hostname,
            os=body.os,
            os_version=body.os_version,
            agent_version=body.agent_version,
            user=body.user,
            local_ips=body.local_ips,
            groups=granted,
            requested_groups=body.groups,
        )
    )
    # A group's own secret vouches for the device's hostname (discovery merges its traffic
    # with the log machine of that name); the shared secret does not.
    await run_in_threadpool(
        lambda: record_enrolment_trust(
            ctx.engine, device.device_id, group_secret=bool(secret_groups)
        )
    )
    ctx.forget_device(device.device_id)  # its previous token stops working here at once
    log.info(
        "device_enrolled",
        device_id=device.device_id,
        hostname=device.hostname,
        groups=list(device.groups),
        requested=list(body.groups),
    )
    return EnrollResponse(
        device_id=device.device_id, device_token=token, groups=list(device.groups)
    )
