"""Squid native ``access.log`` (the default ``logformat squid``).

Layout, ten space-separated fields::

    time elapsed remotehost code/status bytes method URL rfc931 peerstatus/peerhost type
    1700000000.123 153 10.0.0.5 TCP_TUNNEL/200 5120 CONNECT www.dropbox.com:443 alice HIER_DIRECT/162.125.1.18 -

`time` is epoch seconds with milliseconds; `bytes` is what Squid sent to the client (so it is
`bytes_down`; Squid's native format does not log the request size, so `bytes_up` is 0); the user is
the ``rfc931`` column (ident or proxy-auth user, "-" when none); the host comes from the URL
(``host:port`` for CONNECT, ``scheme://host[:port]/...`` otherwise) and the destination IP from
``peerhost``. A result code starting with ``TCP_DENIED`` is "blocked", anything else "allowed".
Extra columns after the tenth (``log_mime_hdrs``) are ignored.

This is a hot path (it runs once per line of a million-line upload): one `str.split` per line, URL parsing cached by authority,
no regex, no datetime objects, records built with `tuple.__new__` (a third of `Record(...)`'s cost).
Uploads go through the fused loop of `enforcer.discovery.fused`, which hands this parser every line
it does not take itself; a change of meaning here must be made there too (`tests/discovery/test_fast.py`
fails until it is).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from enforcer.discovery.formats._util import MAX_COUNT, MAX_TIME, URL_CACHE, url_miss
from enforcer.discovery.records import BadLine, Record, bad_line

FIELDS = 10
_new = tuple.__new__


def parse(lines: Iterable[str]) -> Iterator[Record | BadLine]:
    """Records from the lines of a Squid native access.log; blank and ``#`` lines are skipped."""
    cache = URL_CACHE
    for line_no, line in enumerate(lines, 1):
        f = line.split()
        if len(f) < FIELDS:
            if f and not f[0].startswith("#"):
                yield bad_line(line_no, f"expected {FIELDS} fields, got {len(f)}", line)
            continue
        try:
            t = float(f[0])
            if not 0.0 <= t < MAX_TIME:
                raise ValueError
            url = f[6]
            start = url.find("://")
            if start >= 0:
                end = url.find("/", start + 3)
                if end >= 0:
                    url = url[:end]
            host, ip, port = cache.get(url) or url_miss(url)
            if not ip:
                ip = f[8].partition("/")[2]
                if ip == "-":
                    ip = ""
            user = f[7]
            down = int(f[4])
            if not 0 <= down <= MAX_COUNT:
                raise ValueError
            yield _new(
                Record,
                (
                    t,
                    host,
                    f[2],
                    "" if user == "-" else user,
                    "",
                    ip,
                    port,
                    0,
                    down,
                    "blocked" if f[3][:10] == "TCP_DENIED" else "allowed",
                ),
            )
        except (ValueError, OverflowError):
            yield bad_line(line_no, _reason(f), line)


def _reason(f: list[str]) -> str:
    try:
        if not 0.0 <= float(f[0]) < MAX_TIME:
            raise ValueError
    except ValueError:
        return f"bad time {f[0]!r}"
    return f"bad byte count {f[4]!r}"
