"""Palo Alto Networks PAN-OS TRAFFIC log, CSV (syslog payload or a file of such lines).

Positions are those of the documented TRAFFIC log field order of PAN-OS 10.x/11.x ("Syslog Field
Descriptions" > "Traffic Log Fields"), counted from 0: 0 FUTURE_USE, 1 Receive Time, 2 Serial
Number, 3 Type, 4 Threat/Content Type, 5 FUTURE_USE, 6 Generated Time, 7 Source Address,
8 Destination Address, ..., 12 Source User, ..., 14 Application, ..., 24 Source Port,
25 Destination Port, ..., 29 Protocol, 30 Action, 31 Bytes, 32 Bytes Sent, 33 Bytes Received, ...,
52 Device Name, ..., 82 Source Hostname (10.x and later only). The first 34 are required; what
follows is read when present, so older releases' shorter lines parse too.

The time is the Generated Time (``YYYY/MM/DD HH:MM:SS``, the firewall's clock, read as UTC).
Traffic logs carry no host name: `host` is the Application (App-ID) mapped to a catalog app by
`app_names` (``app:dropbox`` for ``dropbox-uploading``), else "", and `dest_ip` is kept. A THREAT log line of
subtype ``url`` (URL Filtering) is read too: its URL/Filename (position 31) gives the host.
Other log types (SYSTEM, CONFIG, other THREAT subtypes) are reported as bad lines. A header line
(the Web UI's CSV export starts with ``Domain,Receive Time,...``, same order) is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from enforcer.discovery.formats._util import (
    MAX_TIME,
    action_of,
    split_csv,
    split_url,
    to_int,
    to_port,
    ymd_hms,
)
from enforcer.discovery.formats.app_names import app_host
from enforcer.discovery.records import BadLine, Record, bad_line

TYPE, SUBTYPE, GENERATED, SRC, DST, SRC_USER, APPLICATION = 3, 4, 6, 7, 8, 12, 14
DST_PORT, ACTION, BYTES_SENT, BYTES_RECEIVED, URL = 25, 30, 32, 33, 31
SRC_HOSTNAME = 82
REQUIRED = 34


def _time(text: str) -> float:
    date, _, clock = text.partition(" ")
    t = ymd_hms(date, clock, "/")
    if not 0.0 <= t < MAX_TIME:
        raise ValueError(text)
    return t


def parse(lines: Iterable[str]) -> Iterator[Record | BadLine]:
    """Records from PAN-OS TRAFFIC (and URL-filtering THREAT) CSV lines."""
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        f = split_csv(line)
        if len(f) > 2 and f[1].strip().lower() == "receive time":
            continue
        if len(f) < REQUIRED:
            yield bad_line(line_no, f"expected at least {REQUIRED} fields, got {len(f)}", line)
            continue
        kind = f[TYPE]
        if kind != "TRAFFIC" and not (kind == "THREAT" and f[SUBTYPE] == "url"):
            yield bad_line(line_no, f"not a TRAFFIC log (type {kind!r})", line)
            continue
        try:
            t = _time(f[GENERATED] or f[1])
        except (ValueError, OverflowError):
            yield bad_line(line_no, f"bad time {f[GENERATED]!r}", line)
            continue
        # A TRAFFIC line has no host name: the App-ID's application, when the table maps it.
        host = split_url(f[URL])[0] if kind == "THREAT" else app_host("panos", f[APPLICATION])
        try:
            yield Record(
                time=t,
                host=host,
                src_ip=f[SRC],
                user=f[SRC_USER],
                device=f[SRC_HOSTNAME] if len(f) > SRC_HOSTNAME else "",
                dest_ip=f[DST],
                dest_port=to_port(f[DST_PORT]),
                bytes_up=0 if kind == "THREAT" else to_int(f[BYTES_SENT]),
                bytes_down=0 if kind == "THREAT" else to_int(f[BYTES_RECEIVED]),
                action=action_of(f[ACTION]),
            )
        except ValueError:
            yield bad_line(
                line_no,
                f"bad number in port {f[DST_PORT]!r} or bytes {f[BYTES_SENT]!r}/{f[BYTES_RECEIVED]!r}",
                line,
            )
