"""Network events on the wire: what a shim uploads with ``POST /api/v1/events``.

`WireEvent` is one DNS answer or proxied connection with its device context, `EventBatch` an
upload and `EventsAccepted` the answer. The shim builds each event's JSON with `event_json`
(a dict built directly, cut to the limits so that one over-long field cannot get a whole batch
refused); the server validates it with `WireEvent`. tests/wire/ checks that the two agree.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from enforcer.models import EventAction, NetworkEvent
from enforcer.wire.base import CamelModel
from enforcer.wire.limits import (
    APP_ID_MAX,
    BATCH_ID_MAX,
    DEVICE_ID_MAX,
    DOMAIN_MAX,
    HOSTNAME_MAX,
    IP_MAX,
    MAX_BYTES,
    PROCESS_NAME_MAX,
    PROCESS_PATH_MAX,
    USER_MAX,
)


class WireEvent(CamelModel):
    """One DNS answer or proxied connection, as a shim reports it."""

    time: dt.datetime
    hostname: str = Field(default="", max_length=HOSTNAME_MAX)
    user: str = Field(default="", max_length=USER_MAX)
    local_ip: str = Field(default="", max_length=IP_MAX)
    domain: str = Field(default="", max_length=DOMAIN_MAX)
    dest_ip: str = Field(default="", max_length=IP_MAX)
    dest_port: int = Field(default=0, ge=0, le=65535)
    bytes_up: int = Field(default=0, ge=0, le=MAX_BYTES)
    bytes_down: int = Field(default=0, ge=0, le=MAX_BYTES)
    action: EventAction
    indicator: str = Field(default="", max_length=DOMAIN_MAX)
    application: str = Field(default="", max_length=APP_ID_MAX)
    source: Literal["dns", "proxy"]
    pid: int = Field(default=0, ge=0, le=2**31 - 1)
    """The process that made the connection or query (0: not known)."""
    process_name: str = Field(default="", max_length=PROCESS_NAME_MAX)
    process_path: str = Field(default="", max_length=PROCESS_PATH_MAX)

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


class EventBatch(CamelModel):
    """A batch of events; `batchId` is chosen by the device and makes a retry harmless."""

    batch_id: str = Field(min_length=1, max_length=BATCH_ID_MAX)
    events: list[WireEvent]
    device_id: Annotated[str | None, Field(max_length=DEVICE_ID_MAX)] = None


class EventsAccepted(CamelModel):
    """The answer to an upload: which batch, whether it was a repeat, how many events it holds."""

    accepted: list[str]
    duplicate: bool
    count: int


def event_json(event: NetworkEvent, *, hostname: str, user: str, local_ip: str) -> dict[str, Any]:
    """`event` as a `WireEvent` JSON object, with the device's context (its user is the
    fallback when the front end did not know the event's), cut to the field limits."""
    when = event.time if event.time.tzinfo else event.time.replace(tzinfo=dt.UTC)
    return {
        "time": when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "hostname": hostname[:HOSTNAME_MAX],
        "user": (event.user or user)[:USER_MAX],
        "localIp": local_ip,
        "domain": event.domain[:DOMAIN_MAX],
        "destIp": event.dest_ip,
        "destPort": event.dest_port,
        "bytesUp": event.bytes_up,
        "bytesDown": event.bytes_down,
        "action": str(event.action),
        "indicator": event.indicator[:DOMAIN_MAX],
        "application": event.app_id[:APP_ID_MAX],
        "source": event.source,
        "pid": event.pid,
        "processName": event.process_name[:PROCESS_NAME_MAX],
        "processPath": event.process_path[:PROCESS_PATH_MAX],
    }
