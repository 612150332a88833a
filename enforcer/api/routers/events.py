"""`POST /api/v1/events`: devices upload what their shims saw, in idempotent batches;
`GET /api/v1/events`: an admin searches them, newest first, a page at a time.

A device retries a batch until it gets an answer, so the same batch may arrive twice; the store
keeps (device, batchId) unique and a repeat is acknowledged without storing anything.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from enforcer.api.deps import Admin, Ctx, CurrentDevice
from enforcer.api.problems import fail
from enforcer.models import EventAction
from enforcer.pipeline.metrics import EVENTS_INGESTED, EVENTS_REJECTED
from enforcer.store.event_search import count_matching, search_events
from enforcer.store.events import EventRecord, store_batch
from enforcer.web.events import SearchFieldError, event_search, stored_event
from enforcer.wire.events import (
    EventBatch,
    EventList,
    EventsAccepted,
    RefusedEvent,
    WireEvent,
    decode_cursor,
    encode_cursor,
)
from enforcer.wire.limits import DEVICE_ID_MAX, DOMAIN_MAX, PROCESS_PATH_MAX, USER_MAX

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
    wait = ctx.events_limiter.take(device.device_id, len(body.events) or 1)
    if wait > 0:
        EVENTS_REJECTED.labels("rate_limited").inc()
        raise fail(
            429,
            f"more than {ctx.settings.events_per_minute} events a minute from this device; "
            "retry later",
            {"Retry-After": str(math.ceil(wait))},
        )
    # Events dated far from the server's clock are refused one by one (a year-9999 event
    # would never be pruned; a clock years behind would fill the past): the rest is stored.
    now = dt.datetime.now(dt.UTC)
    skew = dt.timedelta(seconds=ctx.settings.max_event_skew)
    records: list[EventRecord] = []
    refused: list[RefusedEvent] = []
    for index, event in enumerate(body.events):
        when = event.time if event.time.tzinfo else event.time.replace(tzinfo=dt.UTC)
        if abs(when - now) > skew:
            side = "ahead of" if when > now else "behind"
            refused.append(
                RefusedEvent(index=index, reason=f"time {side} the server's clock by more "
                             f"than {ctx.settings.max_event_skew:g} s")
            )  # fmt: skip
        else:
            records.append(_record(event))
    if refused:
        EVENTS_REJECTED.labels("out_of_window").inc(len(refused))
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
        accepted=[result.batch_id],
        duplicate=result.duplicate,
        count=result.count,
        refused=[] if result.duplicate else refused,
    )


PAGE_MAX = 1000
"""Most events in one page."""

_TIME_HELP = "A duration back from now (30m, 24h, 7d, 2w) or an ISO 8601 time (UTC if no zone)."


@router.get(
    "/events",
    response_model=EventList,
    response_model_exclude_none=True,
    summary="Search network events (newest first, paged by cursor)",
    tags=["events"],
)
def search(
    _admin: Admin,
    ctx: Ctx,
    device: Annotated[
        str, Query(max_length=DEVICE_ID_MAX, description="A hostname (any case) or device id.")
    ] = "",
    user: Annotated[str, Query(max_length=USER_MAX)] = "",
    process: Annotated[
        str,
        Query(max_length=PROCESS_PATH_MAX, description="An executable name, or a path with /."),
    ] = "",
    domain: Annotated[
        str, Query(max_length=DOMAIN_MAX, description="A name; matches its subdomains too.")
    ] = "",
    action: Annotated[EventAction | None, Query()] = None,
    since: Annotated[str, Query(max_length=64, description=_TIME_HELP)] = "",
    until: Annotated[str, Query(max_length=64, description=_TIME_HELP)] = "",
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100,
    cursor: Annotated[str, Query(max_length=200, description="A previous page's nextCursor.")] = "",
    count: Annotated[
        bool, Query(description="Also count every matching event (reads them all).")
    ] = False,
) -> EventList:
    """The newest events that match every filter given (empty filters match everything)."""
    try:
        search = event_search(
            now=dt.datetime.now(dt.UTC),
            device=device,
            user=user,
            process=process,
            domain=domain,
            action=action.value if action else None,
            since=since,
            until=until,
        )
        before = decode_cursor(cursor) if cursor else None
    except SearchFieldError as exc:
        raise _invalid(exc.field, exc.message) from None
    except ValueError as exc:
        raise _invalid("cursor", str(exc)) from None
    with ctx.engine.connect() as conn:
        page = search_events(conn, search, limit=limit, before=before)
        total = count_matching(conn, search) if count else None
    last = page.last
    return EventList(
        value=[stored_event(found) for found in page.events],
        next_cursor=encode_cursor(*last) if last else None,
        total=total,
    )


def _invalid(field: str, message: str) -> RequestValidationError:
    """The same 422 problem as FastAPI's own validation gives, naming the query parameter."""
    return RequestValidationError(
        [{"loc": ("query", field), "msg": message, "type": "value_error", "input": None}]
    )
