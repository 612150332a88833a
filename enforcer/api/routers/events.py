"""`POST /api/v1/events`: devices upload what their shims saw, in idempotent batches.

A device retries a batch until it gets an answer, so the same batch may arrive twice; the store
keeps (device, batchId) unique and a repeat is acknowledged without storing anything.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from enforcer.api.deps import Ctx, CurrentDevice
from enforcer.api.problems import fail
from enforcer.pipeline.metrics import EVENTS_INGESTED, EVENTS_REJECTED
from enforcer.store.events import EventRecord, store_batch
from enforcer.wire.events import EventBatch, EventsAccepted, WireEvent

router = APIRouter(prefix="/api/v1", tags=["devices"])


def _record(event: WireEvent) -> EventRecord:
    """The stored form of an uploaded event."""
    return EventRecord(
        time=event.time,
        hostname=event.hostname,
        user=event.user,
        local_ip=event.local_ip,
        domain=event.domain,
        dest_ip=event.dest_ip,
        dest_port=event.dest_port,
        bytes_up=event.bytes_up,
        bytes_down=event.bytes_down,
        action=event.action.value,
        indicator=event.indicator,
        app_id=event.application,
        source=event.source,
        pid=event.pid,
        process_name=event.process_name,
        process_path=event.process_path,
    )


@router.post("/events", response_model=EventsAccepted, summary="Upload a batch of network events")
async def post_events(body: EventBatch, device: CurrentDevice, ctx: Ctx) -> EventsAccepted:
    """Store a batch once; a repeated batchId is acknowledged with ``duplicate: true``."""
    if body.device_id is not None and body.device_id != device.device_id:
        EVENTS_REJECTED.labels("wrong_device").inc()
        raise fail(403, "the batch names another device than the token's")
    if len(body.events) > ctx.limits.max_events:
        EVENTS_REJECTED.labels("too_large").inc()
        raise fail(413, f"a batch holds at most {ctx.limits.max_events} events; split it")
    records = [_record(event) for event in body.events]
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
