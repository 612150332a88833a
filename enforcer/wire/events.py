"""Network events on the wire: what a shim uploads with ``POST /api/v1/events``.

`WireEvent` is one DNS answer or proxied connection with its device context, `EventBatch` an
upload and `EventsAccepted` the answer. `StoredEvent` and `EventList` are what an admin reads
back with ``GET /api/v1/events``, `parse_time` reads the times its filters (and the CLI's) take,
and `encode_cursor` / `decode_cursor` make the page cursor. The shim builds each event's JSON with `event_json`
(a dict built directly, cut to the limits so that one over-long field cannot get a whole batch
refused); the server validates it with `WireEvent`. tests/wire/ checks that the two agree.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
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


class RefusedEvent(CamelModel):
    """An event of an accepted batch that was not stored, and why."""

    index: int
    """Its position in the batch's ``events``."""
    reason: str


class EventsAccepted(CamelModel):
    """The answer to an upload: which batch, whether it was a repeat, how many events it
    stored, and the events it refused (stored batches are never resent; refused events are
    not worth resending: their time lies outside the server's window)."""

    accepted: list[str]
    duplicate: bool
    count: int
    refused: list[RefusedEvent] = []


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


class StoredEvent(WireEvent):
    """An event as stored: what the device sent, the device it came from, and its id."""

    id: int
    device_id: str


class EventList(CamelModel):
    """One page of events, newest first.

    `nextCursor` is set when more events match than the page holds: pass it as ``cursor`` to
    read the next (older) page with the same filters. `total` is the number of matching events,
    counted only when asked (``count=true``): a count reads every match.
    """

    value: list[StoredEvent]
    next_cursor: str | None = None
    total: int | None = None


_DURATION = re.compile(r"(\d{1,6})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(value: str, *, now: dt.datetime) -> dt.datetime:
    """A time given as a duration back from `now` (``30m``, ``24h``, ``7d``, ``2w``) or as an
    ISO 8601 time (UTC when it names no zone); ValueError saying which forms are accepted."""
    text = value.strip()
    duration = _DURATION.fullmatch(text)
    if duration is not None:
        return now - dt.timedelta(seconds=int(duration[1]) * _UNIT_SECONDS[duration[2]])
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{value!r} is neither a duration (30m, 24h, 7d, 2w) nor an ISO 8601 time"
            " (2026-05-01 or 2026-05-01T12:00:00Z)"
        ) from None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def encode_cursor(time: dt.datetime, event_id: int) -> str:
    """The cursor of the page that starts below the event (`time`, `event_id`)."""
    raw = f"{time.astimezone(dt.UTC).isoformat()}|{event_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    """The (time, id) a cursor from `encode_cursor` stands for; ValueError when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        time, _, event_id = raw.partition("|")
        when, number = dt.datetime.fromisoformat(time), int(event_id)
        if when.tzinfo is None or not 0 <= number < 2**63:
            raise ValueError
        return when, number
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError("not a cursor from a previous page's nextCursor") from None
