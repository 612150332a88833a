"""The ``--map`` column mapping of the generic csv and jsonl formats.

``time=ts:epoch,host=dest_host,src_ip=client,user=username`` says which column (CSV header name) or
key (JSON; ``a.b`` also reaches into nested objects) holds each `Record` field. It is checked as a
whole before any line is read, so a typo fails the upload at once instead of making every line bad.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from enforcer.discovery.formats._util import (
    MAX_COUNT,
    MAX_PORT,
    MAX_TIME,
    action_of,
    any_time,
    iso_to_epoch,
    number_to_epoch,
    split_host,
    split_url,
)
from enforcer.discovery.records import FormatError, Record

FIELDS = (
    "time", "host", "url", "src_ip", "user", "device", "dest_ip", "dest_port", "bytes_up",
    "bytes_down", "action",
)  # fmt: skip
"""Fields a mapping may name: the `Record` fields, plus ``url`` (the host is taken from it)."""

TIME_FORMATS: dict[str, Callable[[str], float]] = {
    "epoch": number_to_epoch,
    "iso": iso_to_epoch,
    "auto": any_time,
}
"""``time=COLUMN:FORMAT``: epoch seconds (or milliseconds), ISO-8601, or either (the default)."""


def parse_mapping(text: str) -> dict[str, str]:
    """``"time=ts:epoch,host=h"`` → ``{"time": "ts:epoch", "host": "h"}``, checked.

    Raises `FormatError` naming the bad part: no ``=``, an unknown field, a field given twice, an
    empty column, an unknown time format, no ``time``, or none of ``host``/``url``/``dest_ip``.
    """
    mapping: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        field, eq, column = (s.strip() for s in part.partition("="))
        if not eq:
            raise FormatError(f"--map: {part!r} is not field=column")
        if field not in FIELDS:
            raise FormatError(f"--map: {field!r} is not one of {', '.join(FIELDS)}")
        if field in mapping:
            raise FormatError(f"--map: {field!r} is given twice")
        if not column or column.startswith(":"):
            raise FormatError(f"--map: {part!r} names no column")
        if field == "time" and ":" in column:
            fmt = column.rpartition(":")[2]
            if fmt not in TIME_FORMATS:
                raise FormatError(
                    f"--map: time format {fmt!r} is not one of {', '.join(TIME_FORMATS)}"
                )
        mapping[field] = column
    if "time" not in mapping:
        raise FormatError("--map: time=COLUMN is required")
    if not any(f in mapping for f in ("host", "url", "dest_ip")):
        raise FormatError("--map: one of host=, url= or dest_ip= is required")
    return mapping


class Mapping(NamedTuple):
    """A checked mapping, split into columns and the time format."""

    columns: dict[str, str]
    time_format: Callable[[str], float]

    @classmethod
    def of(cls, mapping: str | dict[str, str]) -> Mapping:
        """From ``--map`` text or `parse_mapping`'s result."""
        checked = parse_mapping(mapping) if isinstance(mapping, str) else mapping
        columns = dict(checked)
        fmt = "auto"
        if ":" in columns["time"] and columns["time"].rpartition(":")[2] in TIME_FORMATS:
            columns["time"], _, fmt = columns["time"].rpartition(":")
        return cls(columns, TIME_FORMATS[fmt])

    def record(self, get: Callable[[str], object]) -> Record:
        """The record from `get(column)` (None when absent); ValueError says what is wrong."""
        values = {field: get(column) for field, column in self.columns.items()}
        raw_time = values["time"]
        try:
            if isinstance(raw_time, bool) or raw_time is None:
                raise ValueError
            t = (
                float(raw_time)
                if isinstance(raw_time, int | float)
                else self.time_format(str(raw_time))
            )
            if not 0.0 <= t < MAX_TIME:
                raise ValueError
        except (ValueError, OverflowError):
            raise ValueError(f"bad time {raw_time!r}") from None
        host, ip, port = "", "", 0
        if values.get("host"):
            host, ip = split_host(str(values["host"]))
        if not host and values.get("url"):
            host, ip, port = split_url(str(values["url"]))
        return Record(
            time=t,
            host=host,
            src_ip=_text(values.get("src_ip")),
            user=_text(values.get("user")),
            device=_text(values.get("device")),
            dest_ip=_text(values.get("dest_ip")) or ip,
            dest_port=_count("dest_port", values.get("dest_port"), MAX_PORT) or port,
            bytes_up=_count("bytes_up", values.get("bytes_up")),
            bytes_down=_count("bytes_down", values.get("bytes_down")),
            action=action_of(_text(values.get("action"))),
        )


def _text(value: object) -> str:
    if value is None or value == "-":
        return ""
    return str(value)


def _count(field: str, value: object, limit: int = MAX_COUNT) -> int:
    if value is None or value in ("", "-"):
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"bad {field} {value!r}")
    try:
        number = int(value) if not isinstance(value, str) else int(float(value))
    except (ValueError, OverflowError):
        raise ValueError(f"bad {field} {value!r}") from None
    if not 0 <= number <= limit:
        raise ValueError(f"bad {field} {value!r}")
    return number
