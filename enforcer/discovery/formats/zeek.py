"""Zeek ``http.log``, ``ssl.log``, ``conn.log`` (and ``dns.log``), as TSV or as JSON lines.

TSV (Zeek's default ASCII writer): a header of ``#separator \\x09``, ``#set_separator``,
``#empty_field (empty)``, ``#unset_field -``, ``#path http``, ``#open``, ``#fields ...`` and
``#types ...`` lines, then one tab-separated record per line, then ``#close``. The log type comes
from ``#path`` (or, when that names none we know, from the fields) and the columns from
``#fields``, so a new header in the middle of the file (concatenated logs) is followed. A data line
before any ``#fields`` header is a `FormatError`: nothing in it says what the columns are.

JSON (``LogAscii::use_json=T``): one object per line, ``ts`` as epoch seconds or ISO-8601, ports
and byte counts as numbers, unset fields left out. The log type comes from ``_path`` when present,
else (only then) from the fields: ``conn_state``/``orig_bytes`` → conn, ``server_name``/``cipher`` → ssl,
``host``/``method``/``uri`` → http, ``query`` → dns.

What each log gives: http: ``host`` (the Host header), ``request_body_len`` (up),
``response_body_len`` (down), ``username``; ssl: ``server_name`` (the SNI), no byte counts; conn:
no host name, ``orig_bytes`` (up) and ``resp_bytes`` (down); dns: ``query``. All of them:
``id.orig_h`` (the device), ``id.resp_h`` and ``id.resp_p`` (the destination). Zeek only observes,
so `action` is "".

TSV is a hot path (it runs once per line of a million-line upload): column indexes are computed once per header (`Layout`) and
one `itemgetter` call pulls the eight columns of a line; no per-line dict, no datetime. Uploads
go through the fused loop of `enforcer.discovery.fused`, which reads data lines itself with the same
`Layout` and hands everything else to `irregular` and `data_line` here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from operator import itemgetter
from typing import Any

from enforcer.discovery.formats._util import (
    HOST_CACHE,
    MAX_COUNT,
    MAX_PORT,
    MAX_TIME,
    any_time,
    host_miss,
    split_host,
)
from enforcer.discovery.records import BadLine, FormatError, Record, bad_line

COMMON = ("ts", "id.orig_h", "id.resp_h", "id.resp_p")
"""Columns every supported log has."""

LOGS: dict[str, tuple[str, str, str, str]] = {
    "http": ("host", "request_body_len", "response_body_len", "username"),
    "ssl": ("server_name", "", "", ""),
    "conn": ("", "orig_bytes", "resp_bytes", ""),
    "dns": ("query", "", "", ""),
}
"""Per log type, the columns giving host, bytes up, bytes down and user ("" when it has none)."""

_new = tuple.__new__


class Layout:
    """What the TSV header lines read so far say about the data lines after them."""

    def __init__(self) -> None:
        self.header: dict[str, str] = {}
        self.sep, self.unset, self.empty = "\t", "-", "(empty)"
        self.tabs = -1
        """Separators in a data line (fields - 1); -1: no #fields seen yet."""
        self.cut = -1
        """Split no further than the last column read (-1: split it all)."""
        self.strip = False
        """The last column is read, so the line end must go."""
        self.get: Callable[[list[str]], tuple[str, ...]] = itemgetter(0, 0, 0, 0, 0, 0, 0, 0)
        """The eight columns of a split line: ts, src, dest ip, dest port, host, up, down, user."""

    def read(self, line_no: int, line: str) -> None:
        """Take in a ``#`` header line."""
        key, _, value = line.rstrip("\r\n").partition(
            " " if line.startswith("#separator") else self.sep
        )
        self.header[key[1:]] = value
        if key == "#separator":
            self.sep = _unescape(value)
        elif key == "#unset_field":
            self.unset = value
        elif key == "#empty_field":
            self.empty = value
        elif key == "#fields":
            names = value.split(self.sep)
            tabs = self.tabs = len(names) - 1
            columns = _columns(self.header.get("path", ""), names, line_no)
            last = max(names.index(c) for c in columns if c)
            self.strip = last == tabs
            self.cut = -1 if self.strip else last + 1
            missing = tabs + 1 if self.strip else last + 2
            self.get = itemgetter(*[names.index(c) if c else missing for c in columns])

    def split(self, line: str) -> list[str]:
        """The columns of a data line, plus the unset one that `get` reads for what is lacking."""
        f = line.rstrip("\r\n").split(self.sep) if self.strip else line.split(self.sep, self.cut)
        f.append(self.unset)
        return f


def parse(lines: Iterable[str]) -> Iterator[Record | BadLine]:
    """Records from a Zeek TSV or JSON log; header lines are read, never reported."""
    layout = Layout()
    for line_no, line in enumerate(lines, 1):
        if line.count(layout.sep) != layout.tabs:
            out = irregular(layout, line_no, line)
            if out is not None:
                yield out
        else:
            yield data_line(layout, line_no, line)


def irregular(layout: Layout, line_no: int, line: str) -> Record | BadLine | None:
    """A line without the data lines' number of separators: a header line (read into `layout`),
    a JSON record, a blank line, or a bad line."""
    if line.startswith("#"):
        layout.read(line_no, line)
    elif line.lstrip().startswith("{"):
        return _json_line(line_no, line)
    elif not line.strip():
        return None
    elif layout.tabs < 0:
        raise FormatError("a Zeek log line before any #fields header", line=line_no)
    else:
        got = line.count(layout.sep) + 1
        return bad_line(line_no, f"expected {layout.tabs + 1} fields, got {got}", line)
    return None


def data_line(layout: Layout, line_no: int, line: str) -> Record | BadLine:
    """The record of a TSV data line (one with the header's number of separators)."""
    unset, empty = layout.unset, layout.empty
    ts, src, dip, dport, host, up, down, user = layout.get(layout.split(line))
    try:
        t = float(ts)
        port = 0 if dport == unset else int(dport)
        sent = 0 if up == unset else int(up)
        got = 0 if down == unset else int(down)
        if not (
            0.0 <= t < MAX_TIME
            and 0 <= port <= MAX_PORT
            and 0 <= sent <= MAX_COUNT
            and 0 <= got <= MAX_COUNT
        ):
            raise ValueError
        return _new(
            Record,
            (
                t,
                "" if host in (unset, empty) else (HOST_CACHE.get(host) or host_miss(host))[0],
                "" if src == unset else src,
                "" if user in (unset, empty) else user,
                "",
                "" if dip == unset else dip,
                port,
                sent,
                got,
                "",
            ),
        )
    except (ValueError, OverflowError):
        return bad_line(line_no, _reason(ts, dport, up, down, unset), line)


def _unescape(value: str) -> str:
    """Zeek writes the separator escaped (``\\x09``)."""
    try:
        return value.encode("ascii").decode("unicode_escape") or "\t"
    except (UnicodeError, ValueError):
        return "\t"


def _kind(path: str, has: Mapping[str, object] | set[str]) -> str:
    """The log type: from the path (``http``, or a split log's ``http_eth0``), else the fields.

    Fields decide only when there is no path, because other logs share field names
    (software.log and known_services.log have a ``host`` too).
    """
    if path:
        base = path.partition("_")[0]
        return base if base in LOGS else ""
    if "conn_state" in has or "orig_bytes" in has:
        return "conn"
    if "server_name" in has or "cipher" in has or "ssl_history" in has:
        return "ssl"
    if "host" in has or "method" in has or "uri" in has:
        return "http"
    if "query" in has:
        return "dns"
    return ""


def _columns(path: str, names: list[str], line_no: int) -> list[str]:
    """The eight columns to read (ts, src, dest ip, dest port, host, up, down, user)."""
    kind = _kind(path, set(names))
    if not kind:
        raise FormatError(
            f"Zeek log type {path or '?'!r} is not one of {', '.join(LOGS)}", line=line_no
        )
    missing = [c for c in COMMON if c not in names]
    if missing:
        raise FormatError(f"Zeek #fields lacks {', '.join(missing)}", line=line_no)
    return [*COMMON, *(c if c in names else "" for c in LOGS[kind])]


def _reason(ts: str, dport: str, up: str, down: str, unset: str) -> str:
    try:
        if not 0.0 <= float(ts) < MAX_TIME:
            raise ValueError
    except ValueError:
        return f"bad time {ts!r}"
    for name, value, limit in (
        ("port", dport, MAX_PORT),
        ("byte count", up, MAX_COUNT),
        ("byte count", down, MAX_COUNT),
    ):
        if value != unset and not (value.isascii() and value.isdigit() and int(value) <= limit):
            return f"bad {name} {value!r}"
    return "bad value"


def _json_line(line_no: int, line: str) -> Record | BadLine:
    try:
        d = json.loads(line)
    except ValueError as exc:
        return bad_line(line_no, f"not JSON: {exc}", line)
    except RecursionError:  # json's C parser recurses per level: a parser bomb
        return bad_line(line_no, "not JSON: nested too deeply", line)
    if not isinstance(d, dict):
        return bad_line(line_no, "not a JSON object", line)
    kind = _kind(str(d.get("_path", "")), d)
    if not kind:
        return bad_line(line_no, "not a Zeek http, ssl, conn or dns record", line)
    host_key, up_key, down_key, user_key = LOGS[kind]
    try:
        t = _json_time(d.get("ts"))
        host = d.get(host_key) if host_key else None
        return Record(
            time=t,
            host=split_host(host)[0] if isinstance(host, str) else "",
            src_ip=_text(_id(d, "orig_h")),
            user=_text(d.get(user_key)) if user_key else "",
            dest_ip=_text(_id(d, "resp_h")),
            dest_port=_count(_id(d, "resp_p"), MAX_PORT),
            bytes_up=_count(d.get(up_key)) if up_key else 0,
            bytes_down=_count(d.get(down_key)) if down_key else 0,
        )
    except (ValueError, TypeError, OverflowError) as exc:
        return bad_line(line_no, str(exc), line)


def _id(d: dict[str, Any], name: str) -> object:
    """``id.orig_h`` flat (Zeek's default) or nested under ``id`` (``json_nested``-style writers)."""
    value = d.get("id." + name)
    if value is None and isinstance(d.get("id"), dict):
        value = d["id"].get(name)
    return value


def _json_time(value: object) -> float:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"bad time {value!r}")
    try:
        t = float(value) if isinstance(value, int | float) else any_time(str(value))
    except (ValueError, OverflowError):
        raise ValueError(f"bad time {value!r}") from None
    if not 0.0 <= t < MAX_TIME:
        raise ValueError(f"bad time {value!r}")
    return t


def _text(value: object) -> str:
    return value if isinstance(value, str) and value != "-" else ""


def _count(value: object, limit: int = MAX_COUNT) -> int:
    if value is None or value == "-":
        return 0
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"bad number {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"bad number {value!r}") from None
    if not 0 <= number <= limit:
        raise ValueError(f"bad number {value!r}")
    return number
