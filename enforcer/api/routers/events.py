"""`POST /api/v1/events`: devices upload what their shims saw, in idempotent batches.

A device retries a batch until it gets an answer, so the same batch may arrive twice; the store
keeps (device, batchId) unique and a repeat is acknowledged without storing anything.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from starlette.concurrency import run_in_threadpool

from enforcer.api.deps import Ctx, CurrentDevice
from enforcer.api.problems import fail
from enforcer.models import EventAction
from enforcer.pipeline.metrics import EVENTS_INGESTED, EVENTS_REJECTED
from enforcer.store.events import EventRecord, store_batch

router = APIRouter(prefix="/api/v1", tags=["devices"])

_MAX_BYTES = 1 << 62


class _Camel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True
    )


class EventIn(_Camel):
    """One DNS answer or proxied connection, as a shim reports it."""

    time: dt.datetime
    hostname: str = Field(default="", max_length=255)
    user: str = Field(default="", max_length=256)
    local_ip: str = Field(default="", max_length=64)
    domain: str = Field(default="", max_length=253)
    dest_ip: str = Field(default="", max_length=64)
    dest_port: int = Field(default=0, ge=0, le=65535)
    bytes_up: int = Field(default=0, ge=0, le=_MAX_BYTES)
    bytes_down: int = Field(default=0, ge=0, le=_MAX_BYTES)
    action: EventAction
    indicator: str = Field(default="", max_length=253)
    application: str = Field(default="", max_length=128)
    source: Literal["dns", "proxy"]

    @field_validator("time")
    @classmethod
    def _utc(cls, value: dt.datetime) -> dt.datetime:
        # A shim without a zone in its timestamps reports UTC (its spool writes UTC).
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        try:
            return value.astimezone(dt.UTC)
        except OverflowError:  # 0001-01-01T00:00+05:00 is before year 1 in UTC: a 422, not a 500
            raise ValueError("time is out of range once converted to UTC") from None

    def record(self) -> EventRecord:
        """The stored form."""
        return EventRecord(
            time=self.time,
            hostname=self.hostname,
            user=self.user,
            local_ip=self.local_ip,
            domain=self.domain,
            dest_ip=self.dest_ip,
            dest_port=self.dest_port,
            bytes_up=self.bytes_up,
            bytes_down=self.bytes_down,
            action=self.action.value,
            indicator=self.indicator,
            app_id=self.application,
            source=self.source,
        )


class EventBatch(_Camel):
    """A batch of events; `batchId` is chosen by the device and makes a retry harmless."""

    batch_id: str = Field(min_length=1, max_length=64)
    events: list[EventIn]
    device_id: Annotated[str | None, Field(max_length=128)] = None


class EventsAccepted(_Camel):
    """The answer to an upload: which batch, whether it was a repeat, how many events it holds."""

    accepted: list[str]
    duplicate: bool
    count: int


@router.post("/events", response_model=EventsAccepted, summary="Upload a batch of network events")
async def post_events(body: EventBatch, device: CurrentDevice, ctx: Ctx) -> EventsAccepted:
    """Store a batch once; a repeated batchId is acknowledged with ``duplicate: true``."""
    if body.device_id is not None and body.device_id != device.device_id:
        EVENTS_REJECTED.labels("wrong_device").inc()
        raise fail(403, "the batch names another device than the token's")
    if len(body.events) > ctx.limits.max_events:
        EVENTS_REJECTED.labels("too_large").inc()
        raise fail(413, f"a batch holds at most {ctx.limits.max_events} events; split it")
    records = [event.record() for event in body.events]
    result = await run_in_threadpool(
        lambda: store_batch(
            ctx.engine, device_id=device.device_id, batch_id=body.batch_id, events=records
        )
    )
    if result.duplicate:
        EVENTS_REJECTED.labels("duplicate").inc()
    else:
        EVENTS_INGESTED.inc(result.count)
    return EventsAccepted(
        accepted=[result.batch_id], duplicate=result.duplicate, count=result.count
    )
