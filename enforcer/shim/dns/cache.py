"""The DNS front end's answer cache: upstream answers kept as bytes, served with aged TTLs.

`CachedAnswer` is one upstream answer ready to be served many times: its OPT record stripped,
split around the question so that each hit only joins the query's ID and question to stored
bytes, its TTLs aged by the entry's age and capped at ``max_ttl`` (so a client's own cache
cannot keep a newly blocked name reachable for long). `AnswerCache` is the bounded dict of them,
keyed by (name, type, class, DO bit), read with a plain ``dict.get`` on the hot path.
"""

from __future__ import annotations

import contextlib
import ipaddress

from enforcer.shim.dns import wire as dnswire
from enforcer.shim.dns.wire import MIN_OPT, TYPE_A, TYPE_AAAA, TYPE_OPT

CacheKey = tuple[str, int]
"""(name, the question's type, class and DO bit packed in one int), from `dnswire.parse_query`."""


class CachedAnswer:
    """An upstream answer ready to be served many times: the cache entry.

    The message is kept as bytes without its OPT record, split around the question; only the
    TTL fields change with age, so the patched bytes are kept for the current age (in whole
    seconds) and recomputed at most once a second.
    """

    __slots__ = (
        "add_opt",
        "address",
        "age",
        "aliases",
        "expires",
        "head",
        "head_opt",
        "max_ttl",
        "offsets",
        "raw_tail",
        "stored",
        "tail",
        "tail_opt",
        "ttls",
    )

    def __init__(self, wire: bytes, now: float, max_ttl: int) -> None:
        qend, records = dnswire.walk_records(wire)
        opts = [r for r in records if r.rtype == TYPE_OPT]
        if len(opts) == 1 and records[-1] is opts[0]:
            wire = wire[: opts[0].start]
            arcount = (wire[10] << 8 | wire[11]) - 1
            wire = wire[:10] + arcount.to_bytes(2, "big") + wire[12:]
            records = records[:-1]
            opts = []
        # An odd upstream with an OPT elsewhere keeps it; otherwise EDNS clients get MIN_OPT.
        self.add_opt = not opts
        kept = [r for r in records if r.rtype != TYPE_OPT]
        self.stored = now
        self.max_ttl = max_ttl
        self.offsets = tuple(r.ttl_at - qend for r in kept)
        self.ttls = tuple(int.from_bytes(wire[r.ttl_at : r.ttl_at + 4], "big") for r in kept)
        self.expires = now + min(self.ttls, default=0)
        # A cached answer is not authoritative: clear AA, keep the rest of the upstream's header.
        self.head = bytes((wire[2] & ~0x04 & 0xFF,)) + wire[3:12]
        self.head_opt = self.head
        if self.add_opt:
            self.head_opt = self.head[:8] + ((wire[10] << 8 | wire[11]) + 1).to_bytes(2, "big")
        self.raw_tail = wire[qend:]
        self.address = _first_address(wire, kept)
        """The first A or AAAA address of the answer section, for the event's dest_ip."""
        self.aliases = dnswire.alias_targets(wire, kept)
        """The CNAME/DNAME targets of the answer: checked against the indicators on every
        answer, cached or not, so a name blocked after caching is caught too."""
        self.age = -1
        self.tail = self.tail_opt = b""
        self._patch(0)

    @property
    def cacheable(self) -> bool:
        """Worth keeping: a NOERROR/NXDOMAIN answer with records whose TTLs are not zero."""
        return self.expires > self.stored and (self.head[1] & 0x0F) in (0, 3)

    def _patch(self, age: int) -> None:
        tail = bytearray(self.raw_tail)
        cap = self.max_ttl
        for offset, ttl in zip(self.offsets, self.ttls, strict=True):
            left = ttl - age
            tail[offset : offset + 4] = (cap if left > cap else max(left, 0)).to_bytes(4, "big")
        self.age = age
        self.tail = bytes(tail)
        self.tail_opt = self.tail + MIN_OPT if self.add_opt else self.tail

    def reply(self, data: bytes, qend: int, edns: int, now: float) -> bytes:
        """The answer to the query ``data`` (its ID and question), TTLs aged to ``now``."""
        age = int(now - self.stored)
        if age != self.age:
            self._patch(age)
        if edns:
            return data[:2] + self.head_opt + data[12:qend] + self.tail_opt
        return data[:2] + self.head + data[12:qend] + self.tail


class AnswerCache(dict[CacheKey, CachedAnswer]):
    """Cached answers by key, at most `size`, the oldest dropped first.

    A dict subclass so that a hit costs one C-level ``get``; an entry lives as long as its
    upstream TTLs say (`CachedAnswer.expires`), checked by the reader.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: CacheKey, entry: CachedAnswer) -> None:
        """Keep `entry` if it is worth keeping, dropping the oldest entry when full."""
        if not entry.cacheable:
            return
        if len(self) >= self.size:
            del self[next(iter(self))]
        self[key] = entry


def _first_address(wire: bytes, records: list[dnswire.Record]) -> str:
    for r in records:
        if r.section == 1 and r.rtype in (TYPE_A, TYPE_AAAA):
            with contextlib.suppress(ValueError):
                return str(ipaddress.ip_address(wire[r.ttl_at + 6 : r.end]))
    return ""
