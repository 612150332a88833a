"""Zscaler Internet Access web logs as sent by a Nanolog Streaming Service (NSS) feed.

Zscaler documents no single fixed layout: the admin writes the feed's "Feed Output Format" from
field variables (``%s{time}``, ``%s{login}``, ``%s{cip}``, ``%s{eurl}``, ...). Two shapes are read:

1. Name-value pairs (what Zscaler recommends for SIEMs that parse them): tab-separated
   ``name=value`` pairs named after the NSS variables, e.g.
   ``time=Mon Jun 20 15:29:11 2022<TAB>login=jdoe@example.com<TAB>cip=10.1.2.3<TAB>eurl=ebay.com/...``.
   A QRadar-style ``LEEF:1.0|Zscaler|NSS|...|`` prefix is skipped, and LEEF's names are accepted
   too (``devTime``, ``src``, ``dst``, ``usrName``, ``srcBytes``, ``dstBytes``, ``url``,
   ``hostname``). Space-separated pairs work when no value holds a space.
2. Positional, comma-separated and quoted (or tab-separated), in the order of the documented
   sample web feed (the "NSS Feed Output Format: Web Logs" page), `DEFAULT_FIELDS` below:
   ``"Mon Jun 20 15:29:11 2022","new-gre","HTTP","ebay.com/","Blocked",...``.

A line whose first character is ``"`` or that holds no ``=`` before its first separator is
positional; anything else is name-value. ``%s{time}`` has no zone (the feed's configured zone,
GMT by default): it is read as UTC; ``epochtime`` is preferred when present.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Iterator
from functools import lru_cache

from enforcer.discovery.formats._util import (
    MAX_TIME,
    action_of,
    clock_seconds,
    day_epoch,
    number_to_epoch,
    split_csv,
    split_host,
    split_url,
    to_int,
)
from enforcer.discovery.formats.app_names import app_host
from enforcer.discovery.records import BadLine, Record, bad_line

DEFAULT_FIELDS = (
    "time", "login", "proto", "eurl", "action", "appname", "appclass", "reqsize", "respsize",
    "stime", "ctime", "urlclass", "urlsupercat", "urlcat", "malwarecat", "threatname",
    "riskscore", "dlpeng", "dlpdict", "location", "dept", "cip", "sip", "reqmethod", "respcode",
    "ua", "ereferer", "ruletype", "rulelabel", "contenttype", "unscannabletype", "deviceowner",
    "devicehostname", "keyprotectiontype",
)  # fmt: skip
"""The documented sample web feed's fields, in order (34)."""

_ALIASES = {
    "devtime": "time", "usrname": "login", "src": "cip", "dst": "sip", "srcbytes": "reqsize",
    "dstbytes": "respsize", "url": "eurl", "hostname": "ehost", "host": "ehost",
    "clientip": "cip", "serverip": "sip", "user": "login", "devicename": "devicehostname",
    "datetime": "time",
}  # fmt: skip
_NONE = frozenset({"", "-", "None", "NA", "N/A"})
_MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}


@lru_cache(maxsize=1024)
def _day(year: str, month: str, day: str) -> int:
    return day_epoch(int(year), _MONTHS[month[:3].title()], int(day))


def nss_time(text: str) -> float:
    """Epoch seconds from ``Mon Jun 20 15:29:11 2022`` (``%s{time}``) or ``Jun 20 2022 15:29:11``."""
    parts = text.split()
    if len(parts) in (4, 5) and parts[0][:3].title() in _MONTHS:  # LEEF devTime, maybe a zone
        month, day, year, clock = parts[:4]
    elif len(parts) == 5:  # %s{time}: weekday month day clock year
        _, month, day, clock, year = parts
    else:
        return number_to_epoch(text)
    try:
        return _day(year, month, day) + clock_seconds(clock)
    except KeyError:
        raise ValueError(text) from None


def _pairs(line: str) -> dict[str, str]:
    if line.startswith("LEEF:"):
        line = line.split("|", 5)[-1]
    sep = "\t" if "\t" in line else " "
    out: dict[str, str] = {}
    for part in line.split(sep):
        name, eq, value = part.partition("=")
        if eq:
            key = name.strip().lower()
            out[_ALIASES.get(key, key)] = value.strip()
    return out


def _positional(line: str) -> dict[str, str]:
    if line.startswith('"') and line.endswith('"') and '""' not in line:
        values = line[1:-1].split('","')  # every value quoted, none escaped: the usual NSS line
    else:
        values = split_csv(line, "\t" if "\t" in line and not line.startswith('"') else ",")
    return dict(zip(DEFAULT_FIELDS, values, strict=False))


def _time(d: dict[str, str]) -> float:
    if d.get("epochtime", "") not in _NONE:
        t = number_to_epoch(d["epochtime"])
    elif d.get("time", "") not in _NONE:
        t = nss_time(d["time"])
    else:
        raise ValueError
    if not 0.0 <= t < MAX_TIME:
        raise ValueError
    return t


def _record(t: float, d: dict[str, str]) -> Record:
    host, ip, port = "", "", 0
    if d.get("ehost", "") not in _NONE:
        host, ip = split_host(d["ehost"])
    if not host and d.get("eurl", "") not in _NONE:
        host, ip, port = split_url(d["eurl"])
    if not host and d.get("appname", "") not in _NONE:  # an application, no host: `app_names`
        host = app_host("zscaler", d["appname"])
    sip = d.get("sip", "")
    device = d.get("devicehostname", "")
    return Record(
        time=t,
        host=host,
        src_ip=d.get("cip", ""),
        user="" if d.get("login", "") in _NONE else d["login"],
        device="" if device in _NONE else device,
        dest_ip=ip or ("" if sip in _NONE else sip),
        dest_port=port,
        bytes_up=to_int(d.get("reqsize", "")),
        bytes_down=to_int(d.get("respsize", "")),
        action=action_of(d.get("action", "")),
    )


def parse(lines: Iterable[str]) -> Iterator[Record | BadLine]:
    """Records from NSS web log lines, name-value or positional (see the module docstring)."""
    for line_no, raw in enumerate(lines, 1):
        line = raw.strip("\r\n")
        if not line.strip() or line.startswith("#"):
            continue
        first = min((i for i in (line.find("\t"), line.find(",")) if i >= 0), default=len(line))
        positional = line.startswith('"') or "=" not in line[:first]
        d = _positional(line) if positional else _pairs(line)
        if positional and len(d) < len(DEFAULT_FIELDS):
            yield bad_line(line_no, f"expected {len(DEFAULT_FIELDS)} fields, got {len(d)}", raw)
            continue
        try:
            t = _time(d)
        except (ValueError, OverflowError):
            yield bad_line(line_no, f"bad time {d.get('epochtime') or d.get('time', '')!r}", raw)
            continue
        try:
            yield _record(t, d)
        except ValueError:
            sizes = d.get("reqsize", ""), d.get("respsize", "")
            yield bad_line(line_no, f"bad byte count in {sizes[0]!r}/{sizes[1]!r}", raw)
