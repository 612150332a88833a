"""W3C Extended Log File Format: Microsoft IIS, Blue Coat (Symantec) ProxySG, and others.

The columns are whatever the latest ``#Fields:`` directive says (a new one may come mid-file);
values are space-separated, ``-`` means nothing, and ProxySG quotes values that hold spaces
(``"Mozilla/5.0 (Windows NT 10.0)"``). Times are ``date`` (``YYYY-MM-DD``) and ``time``
(``HH:MM:SS``) in UTC, as the W3C draft specifies and IIS writes them.

Fields read (the first one present wins):

- host: ``cs-host`` or ``cs(Host)``, else the host of a full ``cs-uri``; an address there is
  kept as `dest_ip` instead;
- device IP: ``c-ip``; user: ``cs-username``; device name: ``x-cs-client-hostname``, ``c-dns``;
- destination: ``r-ip`` (ProxySG: the origin server) and ``cs-uri-port``/``r-port``; in a server's
  own log (IIS: no ``s-action`` nor ``sc-filter-result``) ``s-ip`` and ``s-port`` are the
  destination, while in a proxy's log ``s-ip`` is the proxy itself and is not used;
- bytes: ``cs-bytes`` (up) and ``sc-bytes`` (down);
- action: ProxySG's ``sc-filter-result`` (``DENIED`` → blocked, ``OBSERVED``/``PROXIED`` →
  allowed), else ``s-action`` (``TCP_DENIED``… → blocked).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from operator import itemgetter

from enforcer.discovery.formats._util import (
    MAX_TIME,
    action_of,
    split_host,
    split_url,
    to_int,
    to_port,
    ymd_hms,
)
from enforcer.discovery.records import BadLine, Record, bad_line

_new = tuple.__new__
_QUOTED = re.compile(r'"((?:[^"]|"")*)"|(\S+)')

_WANTED: dict[str, tuple[str, ...]] = {
    "date": ("date",),
    "time": ("time",),
    "host": ("cs-host", "cs(host)", "x-cs-host", "cs-uri"),
    "src": ("c-ip",),
    "user": ("cs-username", "cs-user"),
    "device": ("x-cs-client-hostname", "c-dns"),
    "dest": ("r-ip", "s-ip"),
    "port": ("cs-uri-port", "r-port", "s-port"),
    "up": ("cs-bytes",),
    "down": ("sc-bytes",),
    "action": ("sc-filter-result", "s-action"),
}


class _Layout:
    """Column positions for one ``#Fields:`` directive, computed once."""

    def __init__(self, names: list[str]) -> None:
        lower = [n.lower() for n in names]
        proxy = "s-action" in lower or "sc-filter-result" in lower
        self.count = len(names)
        index: list[int] = []
        self.host_is_uri = False
        for key, candidates in _WANTED.items():
            found = self.count  # the appended "-" column
            for name in candidates:
                if proxy and name in ("s-ip", "s-port"):
                    continue
                if name in lower:
                    found = lower.index(name)
                    self.host_is_uri = self.host_is_uri or (key == "host" and name == "cs-uri")
                    break
            index.append(found)
        self.has_time = index[0] < self.count and index[1] < self.count
        self.get = itemgetter(*index)


def _split(line: str) -> list[str]:
    """Space-separated values; a double-quoted value is one value (ProxySG quotes user agents)."""
    if '"' not in line:
        return line.split()
    if '""' in line or line.count('"') % 2:  # doubled (escaped) quotes or an unclosed one
        return [
            q.replace('""', '"') if q or not bare else bare for q, bare in _QUOTED.findall(line)
        ]
    out: list[str] = []
    for i, part in enumerate(line.split('"')):
        if i % 2:
            out.append(part)
        else:
            out.extend(part.split())
    return out


def parse(lines: Iterable[str]) -> Iterator[Record | BadLine]:
    """Records from a W3C extended log; directives (``#...``) set the layout and are not records."""
    layout: _Layout | None = None
    for line_no, line in enumerate(lines, 1):
        if line.startswith("#"):
            if line[1:8].lower() == "fields:":
                layout = _Layout(line[8:].split())
            continue
        f = _split(line)
        if not f:
            continue
        if layout is None:
            yield bad_line(line_no, "no #Fields: directive before this line", line)
            continue
        if len(f) != layout.count:
            yield bad_line(line_no, f"expected {layout.count} fields, got {len(f)}", line)
            continue
        if not layout.has_time:
            yield bad_line(line_no, "the #Fields: directive has no date and time", line)
            continue
        f.append("-")
        date, clock, host, src, user, device, dest, port, up, down, action = layout.get(f)
        try:
            t = ymd_hms(date, clock)
            if not 0.0 <= t < MAX_TIME:
                raise ValueError
        except (ValueError, OverflowError):
            yield bad_line(line_no, f"bad time {date + ' ' + clock!r}", line)
            continue
        if layout.host_is_uri:
            name, ip, url_port = split_url(host)
        else:
            (name, ip), url_port = split_host(host), 0
        try:
            yield _new(
                Record,
                (
                    t,
                    name,
                    "" if src == "-" else src,
                    "" if user == "-" else user,
                    "" if device == "-" else device,
                    ip or ("" if dest == "-" else dest),
                    to_port(port) or url_port,
                    to_int(up),
                    to_int(down),
                    action_of(action),
                ),
            )
        except ValueError:
            yield bad_line(line_no, f"bad number in port {port!r} or bytes {up!r}/{down!r}", line)
