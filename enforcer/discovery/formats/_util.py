"""Helpers shared by the format parsers: host and URL normalisation, times, actions, CSV splitting.

Host normalisation is cached because real logs repeat the same few thousand names millions of
times; the caches are cleared when they grow past `CACHE_SIZE`, so memory stays bounded whatever
the file size.
"""

from __future__ import annotations

import calendar
import csv
from datetime import datetime
from functools import lru_cache

CACHE_SIZE = 1 << 16
MAX_TIME = 1e11
"""Epoch seconds beyond this (year 5138) are not a time but a mistake (or milliseconds)."""
MAX_COUNT = (1 << 63) - 1
"""Largest byte count kept: what a signed 64-bit database column holds."""
MAX_PORT = 65535

_IPV4_CHARS = frozenset("0123456789.")
HOST_CACHE: dict[str, tuple[str, str]] = {}
URL_CACHE: dict[str, tuple[str, str, int]] = {}
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443}


def _split_host(name: str) -> tuple[str, str]:
    name = name.strip().lower()
    if name.startswith("["):  # [v6] or [v6]:port
        end = name.find("]")
        return ("", name[1:end]) if end > 0 else ("", "")
    if name.count(":") == 1:  # host:port (two or more colons: a bare IPv6 address)
        name = name.partition(":")[0]
    name = name.rstrip(".")
    if not name or name == "-":
        return "", ""
    if ":" in name or (name[-1].isdigit() and _IPV4_CHARS.issuperset(name)):
        return "", name
    return name, ""


def split_host(name: str) -> tuple[str, str]:
    """`(host, ip)` from a host name or address as logs write it (any case, maybe a port or a dot).

    Exactly one of the two is non-empty, or neither when `name` is empty or "-".
    """
    return HOST_CACHE.get(name) or host_miss(name)


def host_miss(name: str) -> tuple[str, str]:
    """`split_host` of a name not in `HOST_CACHE`, remembered there.

    Hot loops inline ``HOST_CACHE.get(name) or host_miss(name)`` to save a call per line.
    """
    if len(HOST_CACHE) >= CACHE_SIZE:
        HOST_CACHE.clear()
    hit = HOST_CACHE[name] = _split_host(name)
    return hit


def _is_number(text: str) -> bool:
    """ASCII digits only (`str.isdigit` alone accepts "²", which `int` refuses)."""
    return text.isascii() and text.isdigit()


def _split_url(url: str) -> tuple[str, str, int]:
    scheme, sep, rest = url.partition("://")
    if not sep:  # authority form (CONNECT host:port) or a bare host
        scheme, rest = "", url
    for stop in "/?#":
        cut = rest.find(stop)
        if cut >= 0:
            rest = rest[:cut]
    rest = rest.rpartition("@")[2]
    port = _DEFAULT_PORTS.get(scheme.lower(), 0)
    if rest.startswith("["):
        close = rest.find("]")
        tail = rest[close + 1 :] if close > 0 else ""
        if tail.startswith(":") and _is_number(tail[1:]):
            port = int(tail[1:]) if int(tail[1:]) <= MAX_PORT else 0
    elif rest.count(":") == 1:
        head, _, tail = rest.partition(":")
        if _is_number(tail):
            port = int(tail) if int(tail) <= MAX_PORT else 0
        elif tail:  # "error:invalid-request" and the like: not a URL at all
            return "", "", 0
        rest = head
    host, ip = split_host(rest)
    return host, ip, port


def split_url(url: str) -> tuple[str, str, int]:
    """`(host, ip, port)` from an absolute URL, an authority (``host:port``) or a bare host.

    The port is the explicit one, else the scheme's default, else 0.
    """
    # Cache on scheme and authority only: paths and queries are nearly all different.
    start = url.find("://")
    if start >= 0:
        end = url.find("/", start + 3)
        if end >= 0:
            url = url[:end]
    return URL_CACHE.get(url) or url_miss(url)


def url_miss(url: str) -> tuple[str, str, int]:
    """`split_url` of a URL not in `URL_CACHE` (cut after the authority), remembered there.

    Hot loops inline ``URL_CACHE.get(key) or url_miss(key)`` to save a call per line.
    """
    if len(URL_CACHE) >= CACHE_SIZE:
        URL_CACHE.clear()
    hit = URL_CACHE[url] = _split_url(url)
    return hit


@lru_cache(maxsize=4096)
def day_epoch(year: int, month: int, day: int) -> int:
    """Epoch seconds of midnight UTC starting that day (cached: logs stay on few days)."""
    return calendar.timegm((year, month, day, 0, 0, 0, 0, 0, 0))


def clock_seconds(text: str) -> float:
    """Seconds since midnight from ``HH:MM:SS[.fff]``."""
    hh, mm, ss = text.split(":")
    if not (hh.isdigit() and mm.isdigit()):
        raise ValueError(text)
    return int(hh) * 3600 + int(mm) * 60 + float(ss)


_DAYS: dict[str, int] = {}


def ymd_hms(date: str, clock: str, sep: str = "-") -> float:
    """Epoch seconds from ``YYYY-MM-DD`` (or with `sep`) and ``HH:MM:SS[.fff]``, taken as UTC.

    Days are cached by their text and the common ``HH:MM:SS`` shape is sliced, not split: this
    runs once per line in the W3C and PAN-OS parsers.
    """
    day = _DAYS.get(date)
    if day is None:
        y, m, d = date.split(sep)
        if len(_DAYS) >= CACHE_SIZE:
            _DAYS.clear()
        day = _DAYS[date] = day_epoch(int(y), int(m), int(d))
    if len(clock) == 8 and clock[2] == ":" and clock[5] == ":" and clock.isascii():
        return float(day + int(clock[:2]) * 3600 + int(clock[3:5]) * 60 + int(clock[6:]))
    return day + clock_seconds(clock)


def iso_to_epoch(text: str) -> float:
    """Epoch seconds from ISO-8601 (``2018-03-24T17:15:20.615923Z``, offsets allowed); naive is UTC."""
    if len(text) >= 19 and text[10] in "T " and (text.endswith("Z") or len(text) <= 26):
        # The common shape (UTC with Z, or naive) without building a datetime.
        clock = text[11:-1] if text.endswith("Z") else text[11:]
        if "+" not in clock and "-" not in clock:
            return ymd_hms(text[:10], clock)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        return calendar.timegm(parsed.timetuple()) + parsed.microsecond / 1e6
    return parsed.timestamp()


def number_to_epoch(text: str) -> float:
    """Epoch seconds from a number of seconds, or of milliseconds when it is too large for seconds."""
    value = float(text)
    return value / 1000.0 if value > 1e11 else value


def any_time(text: str) -> float:
    """Epoch seconds from either an epoch number or ISO-8601."""
    try:
        return number_to_epoch(text)
    except ValueError:
        return iso_to_epoch(text)


_ALLOWED = frozenset({"allow", "allowed", "accept", "accepted", "pass", "permit", "permitted",
                      "observed", "proxied", "continue", "alert", "ok", "success"})  # fmt: skip
_BLOCKED = frozenset({"deny", "denied", "drop", "dropped", "block", "blocked", "reject",
                      "rejected", "reset-client", "reset-server", "reset-both", "drop-icmp",
                      "block-url", "block-continue", "block-override", "sinkhole", "refused",
                      "failed"})  # fmt: skip


_ACTIONS: dict[str, str] = {}


def action_of(text: str) -> str:
    """The action ("allowed", "blocked" or "") from the many words devices use (cached)."""
    hit = _ACTIONS.get(text)
    if hit is None:
        if len(_ACTIONS) >= CACHE_SIZE:
            _ACTIONS.clear()
        hit = _ACTIONS[text] = _action_of(text)
    return hit


def _action_of(text: str) -> str:
    word = text.strip().lower()
    if word in _BLOCKED or word.startswith(("tcp_denied", "deny", "block")):
        return "blocked"
    if word in _ALLOWED:
        return "allowed"
    return ""


def dash(value: str) -> str:
    """The value, or "" for the "-" most logs write for nothing."""
    return "" if value == "-" else value


def to_int(text: str, limit: int = MAX_COUNT) -> int:
    """A count from 0 to `limit`; "", "-", "None" and "N/A" are 0; anything else is a ValueError."""
    if not text or text in ("-", "None", "NA", "N/A"):
        return 0
    number = int(text)
    if not 0 <= number <= limit:
        raise ValueError(text)
    return number


def to_port(text: str) -> int:
    """A TCP/UDP port (0 to 65535), as `to_int`."""
    return to_int(text, MAX_PORT)


def split_csv(line: str, sep: str = ",") -> list[str]:
    """One CSV line: a plain split when nothing is quoted, the csv module when something is."""
    line = line.rstrip("\r\n")
    if '"' not in line:
        return line.split(sep)
    try:
        return next(csv.reader([line], delimiter=sep), [])
    except csv.Error:  # a stray CR or NUL: the plain split keeps the line's fields countable
        return line.split(sep)
