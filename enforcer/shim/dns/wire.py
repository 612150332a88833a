"""The few pieces of the DNS wire format the sinkhole's hot path needs, done by hand on bytes.

Why not dnspython here: building a ``dns.message.Message`` per query costs tens of microseconds,
about ten times the rest of an answer. A stub resolver only needs the question, the EDNS payload
size and the DO bit of a query, and it answers blocked names with a handful of fixed bytes. So a
query is read with `parse_query` (strict bounds checks, no compression allowed in the question,
which a query has no earlier name to point to, so pointer loops cannot happen), blocked and
refused answers are joined from bytes computed once (`Responses`), and upstream responses are
walked once, on a cache miss, by `walk_records` to find their TTL fields. dnspython stays the
reference for the tests and for anything beyond that.

RFC 1035 section 4 (message format), RFC 6891 (EDNS OPT), RFC 2308 (negative answers: the SOA in
the authority section tells the client how long to cache an NXDOMAIN).
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

TYPE_A = 1
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_AAAA = 28
TYPE_DNAME = 39
TYPE_OPT = 41
CLASS_IN = 1
RCODE_NOERROR = 0
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5

HEADER_LEN = 12
MAX_NAME_WIRE = 255
UDP_PLAIN_LIMIT = 512
"""Largest UDP answer for a client that sent no OPT record (RFC 1035 section 2.3.4)."""
EDNS_PAYLOAD = 1232
"""UDP payload size the shim advertises (the DNS flag day 2020 value: no IP fragmentation)."""

EDNS_PRESENT = 1 << 16
EDNS_DO = 1 << 17
"""Bits of the ``edns`` value `parse_query` returns, above the client's UDP payload size."""

MIN_OPT = b"\x00" + TYPE_OPT.to_bytes(2, "big") + EDNS_PAYLOAD.to_bytes(2, "big") + bytes(6)
"""The OPT record echoed to a client that sent one: payload size, version 0, no flags/options."""


_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00"
_OPT_HEAD = b"\x00\x00" + bytes((TYPE_OPT,))
_MAX_ROOT = HEADER_LEN + MAX_NAME_WIRE - 1
"""Offset of the root label's zero byte of a name of the longest wire length (255 bytes)."""
_new_tuple = tuple.__new__


class ParsedQuery(NamedTuple):
    """The parts of a query the front end uses (see `parse_query`)."""

    name: str
    """Lower-case, dot-separated, no trailing dot; "" for the root."""
    qend: int
    """Offset just after the question: ``data[12:qend]`` is the question to echo."""
    qtype: int
    edns: int
    """0 without OPT; else the client's UDP payload size | EDNS_PRESENT | (EDNS_DO if DO set)."""
    qkey: int
    """qtype, qclass and the DO bit in one int (``qtype << 17 | qclass << 1 | DO``): with the
    name, what an answer depends on, so the front end's cache key."""

    @property
    def qclass(self) -> int:
        return (self.qkey >> 1) & 0xFFFF


def parse_query(data: bytes) -> ParsedQuery | None:
    """Read a standard query with exactly one question; None for anything else.

    Rejected (None): shorter than a header, a response (QR set), an opcode other than QUERY, a
    question count other than 1, answer or authority records, a name with a compression pointer
    or an over-long label or name, and an additional section other than one OPT record. Never
    raises on any input.
    """
    n = len(data)
    if n < 17 or data[2] & 0xF8 or data[4:10] != _ONE_QUESTION or data[10]:
        return None
    pos = 12
    labels = []
    while True:
        length = data[pos] if pos < n else 255
        if length == 0:
            break
        if length > 63 or pos >= _MAX_ROOT:  # bounds the loop too, whatever the packet's size
            return None
        labels.append(data[pos + 1 : pos + 1 + length])
        pos += length + 1
    # pos is at the root label's zero byte; qtype and qclass follow.
    qend = pos + 5
    if pos > _MAX_ROOT or qend > n:
        return None
    name = b".".join(labels).decode("latin-1").lower()
    qtype = data[pos + 1] << 8 | data[pos + 2]
    qkey = qtype << 17 | data[pos + 3] << 9 | data[pos + 4] << 1
    arcount = data[11]
    if arcount == 0:
        if qend != n:
            return None
        return _new_tuple(ParsedQuery, (name, qend, qtype, 0, qkey))
    # One OPT record: root owner, type 41, class = payload size, TTL = ext-rcode/version/flags.
    if arcount > 1 or n < qend + 11 or data[qend : qend + 3] != _OPT_HEAD:
        return None
    if qend + 11 + (data[qend + 9] << 8 | data[qend + 10]) != n:
        return None
    payload = data[qend + 3] << 8 | data[qend + 4]
    if payload < UDP_PLAIN_LIMIT:
        payload = UDP_PLAIN_LIMIT
    edns = payload | EDNS_PRESENT
    if data[qend + 7] & 0x80:
        edns |= EDNS_DO
        qkey |= 1
    return _new_tuple(ParsedQuery, (name, qend, qtype, edns, qkey))


def is_plain_query_header(data: bytes) -> bool:
    """True when the bytes start with a query header whose opcode is not QUERY (answer NOTIMP)."""
    return len(data) >= HEADER_LEN and not data[2] & 0x80 and bool(data[2] & 0x78)


def encode_name(name: str) -> bytes:
    """A dotted name in wire form (no compression)."""
    out = bytearray()
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("ascii")
            out.append(len(raw))
            out += raw
    out.append(0)
    return bytes(out)


def _flag_index(data: bytes) -> int:
    """0..3 from the query's RD and CD bits: which precomputed header to use."""
    return (data[2] & 0x01) | (data[3] & 0x10) >> 3


def _heads(rcode: int, an: int, ns: int) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """Header bytes 2..12 (flags and counts) per query flag index, without and with OPT."""
    variants: list[tuple[bytes, ...]] = []
    for ar in (0, 1):
        row = []
        for index in range(4):
            rd, cd = index & 1, (index >> 1) & 1
            flags = bytes((0x80 | rd, 0x80 | cd << 4 | rcode))
            counts = (1).to_bytes(2, "big") + an.to_bytes(2, "big") + ns.to_bytes(2, "big")
            row.append(flags + counts + ar.to_bytes(2, "big"))
        variants.append(tuple(row))
    return variants[0], variants[1]


_POINTERS = tuple((0xC000 | offset).to_bytes(2, "big") for offset in range(HEADER_LEN + 256))
"""Compression pointers to each offset of the question name (where a suffix of it starts)."""


class Responses:
    """Answers the front end makes itself, joined from bytes computed once per setting.

    A blocked answer is the query's ID, fixed flags and counts, the query's own question, and
    either an SOA in the authority section (NXDOMAIN, or NODATA for a record type the sinkhole
    has no address of) or the sinkhole address. The SOA's owner is the blocked indicator itself,
    written as a compression pointer into the question (the indicator is a suffix of the name),
    and both its TTL and its MINIMUM are the blocked TTL, so clients cache the answer that long.
    """

    __slots__ = (
        "_answer",
        "_nodata",
        "_nx",
        "_refused",
        "_servfail",
        "_sinkhole_rr",
        "_sinkhole_type",
        "_soa_tail",
    )

    def __init__(self, blocked_ttl: int, sinkhole: str | None = None) -> None:
        ttl = blocked_ttl.to_bytes(4, "big")
        soa_rdata = (
            encode_name("blocked.enforcer.invalid")
            + encode_name("hostmaster.enforcer.invalid")
            + (1).to_bytes(4, "big")  # serial
            + (3600).to_bytes(4, "big")  # refresh
            + (600).to_bytes(4, "big")  # retry
            + (86400).to_bytes(4, "big")  # expire
            + ttl  # minimum: the negative-caching TTL (RFC 2308)
        )
        self._soa_tail = (
            TYPE_SOA.to_bytes(2, "big")
            + CLASS_IN.to_bytes(2, "big")
            + ttl
            + len(soa_rdata).to_bytes(2, "big")
            + soa_rdata
        )
        self._nx = _heads(RCODE_NXDOMAIN, 0, 1)
        self._nodata = _heads(RCODE_NOERROR, 0, 1)
        self._answer = _heads(RCODE_NOERROR, 1, 0)
        self._refused = _heads(RCODE_REFUSED, 0, 0)
        self._servfail = _heads(RCODE_SERVFAIL, 0, 0)
        self._sinkhole_type = 0
        self._sinkhole_rr = b""
        if sinkhole is not None:
            address = ipaddress.ip_address(sinkhole)
            self._sinkhole_type = TYPE_A if address.version == 4 else TYPE_AAAA
            packed = address.packed
            self._sinkhole_rr = (
                _POINTERS[HEADER_LEN]
                + self._sinkhole_type.to_bytes(2, "big")
                + CLASS_IN.to_bytes(2, "big")
                + ttl
                + len(packed).to_bytes(2, "big")
                + packed
            )

    def blocked(self, data: bytes, qend: int, qtype: int, suffix: int, edns: int) -> bytes:
        """The answer for a blocked name; ``suffix`` = offset of the indicator in the name."""
        has_opt = 1 if edns else 0
        flags = (data[2] & 0x01) | (data[3] & 0x10) >> 3  # _flag_index, inlined: hot path
        if self._sinkhole_type:
            if qtype == self._sinkhole_type:
                head = self._answer[has_opt][flags]
                rr = self._sinkhole_rr
                return data[:2] + head + data[12:qend] + rr + (MIN_OPT if has_opt else b"")
            head = self._nodata[has_opt][flags]
        else:
            head = self._nx[has_opt][flags]
        return b"".join(
            (
                data[:2],
                head,
                data[12:qend],
                _POINTERS[HEADER_LEN + suffix],
                self._soa_tail,
                MIN_OPT if has_opt else b"",
            )
        )

    def nxdomain(self, data: bytes, qend: int, edns: int) -> bytes:
        """NXDOMAIN with the SOA at the queried name (for names the shim answers for itself)."""
        has_opt = 1 if edns else 0
        head = self._nx[has_opt][_flag_index(data)]
        opt = MIN_OPT if has_opt else b""
        return data[:2] + head + data[12:qend] + _POINTERS[HEADER_LEN] + self._soa_tail + opt

    def refused(self, data: bytes, qend: int, edns: int) -> bytes:
        """REFUSED, echoing the question (fail-closed before an indicator set is loaded)."""
        return self._rcode_only(self._refused, data, qend, edns)

    def servfail(self, data: bytes, qend: int, edns: int) -> bytes:
        """SERVFAIL, echoing the question (no upstream answered)."""
        return self._rcode_only(self._servfail, data, qend, edns)

    @staticmethod
    def _rcode_only(
        heads: tuple[tuple[bytes, ...], tuple[bytes, ...]], data: bytes, qend: int, edns: int
    ) -> bytes:
        has_opt = 1 if edns else 0
        opt = MIN_OPT if has_opt else b""
        return data[:2] + heads[has_opt][_flag_index(data)] + data[12:qend] + opt


def notimp(data: bytes) -> bytes:
    """NOTIMP for a query with another opcode: the header alone, opcode and RD echoed."""
    flags = bytes((0x80 | (data[2] & 0x79), 0x80 | RCODE_NOTIMP))
    return data[:2] + flags + bytes(8)


def truncated(response: bytes, data: bytes, qend: int, edns: int) -> bytes:
    """A UDP answer too large for the client: the header with TC set and the question only.

    The client retries over TCP (RFC 7766), where the full answer is sent.
    """
    flags = bytes((response[2] | 0x02, response[3]))
    has_opt = 1 if edns else 0
    counts = b"\x00\x01\x00\x00\x00\x00\x00" + bytes((has_opt,))
    return data[:2] + flags + counts + data[12:qend] + (MIN_OPT if has_opt else b"")


class Record(NamedTuple):
    """Where one resource record of a response lies (offsets into the message)."""

    rtype: int
    start: int
    ttl_at: int
    """Offset of the 4-byte TTL field; the RDATA starts 6 bytes later (after RDLENGTH)."""
    end: int
    section: int
    """1 answer, 2 authority, 3 additional."""


def skip_name(wire: bytes, pos: int) -> int:
    """Offset just after the (possibly compressed) name at ``pos``; ValueError if malformed."""
    n = len(wire)
    while True:
        if pos >= n:
            raise ValueError("name runs past the end of the message")
        length = wire[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            if pos + 2 > n:
                raise ValueError("truncated compression pointer")
            return pos + 2
        if length > 63:
            raise ValueError("reserved label type")
        pos += length + 1


def read_name(wire: bytes, pos: int) -> str:
    """The (possibly compressed) name at ``pos`` in lower case, without the trailing dot.

    Compression pointers must point backwards (as RFC 1035 messages do), which also bounds
    the walk; a name longer than 255 octets, a reserved label type or a pointer out of the
    message raises ValueError.
    """
    n = len(wire)
    labels: list[str] = []
    octets = 0
    limit = pos
    while True:
        if pos >= n:
            raise ValueError("name runs past the end of the message")
        length = wire[pos]
        if length == 0:
            return ".".join(labels)
        if length & 0xC0 == 0xC0:
            if pos + 2 > n:
                raise ValueError("truncated compression pointer")
            target = (length & 0x3F) << 8 | wire[pos + 1]
            if target >= limit:
                raise ValueError("compression pointer does not point backwards")
            pos = limit = target
            continue
        if length > 63:
            raise ValueError("reserved label type")
        octets += length + 1
        if octets > MAX_NAME_WIRE or pos + 1 + length > n:
            raise ValueError("name too long or truncated")
        labels.append(wire[pos + 1 : pos + 1 + length].decode("latin-1").lower())
        pos += length + 1


def alias_targets(wire: bytes, records: list[Record]) -> tuple[str, ...]:
    """The names an answer's CNAME and DNAME records lead to (answer section, in order).

    The resolver followed the chain to its end; each of these names is one the client's
    traffic really goes to, so each is checked against the indicators like the queried name.
    """
    names: list[str] = []
    for r in records:
        if r.section == 1 and r.rtype in (TYPE_CNAME, TYPE_DNAME):
            name = read_name(wire, r.ttl_at + 6)
            if name and name not in names:
                names.append(name)
    return tuple(names)


def walk_records(wire: bytes) -> tuple[int, list[Record]]:
    """The offset after the question and every record of a one-question message.

    Used once per upstream answer (a cache miss), never per cached answer. Raises ValueError on
    any structural error, so a bad upstream message is refused rather than cached.
    """
    if len(wire) < HEADER_LEN:
        raise ValueError("short message")
    qdcount = wire[4] << 8 | wire[5]
    if qdcount != 1:
        raise ValueError("not exactly one question")
    qend = pos = skip_name(wire, HEADER_LEN) + 4
    counts = (wire[6] << 8 | wire[7], wire[8] << 8 | wire[9], wire[10] << 8 | wire[11])
    records: list[Record] = []
    for section, count in enumerate(counts, start=1):
        for _ in range(count):
            start = pos
            pos = skip_name(wire, pos)
            if pos + 10 > len(wire):
                raise ValueError("truncated record header")
            rtype = wire[pos] << 8 | wire[pos + 1]
            rdlength = wire[pos + 8] << 8 | wire[pos + 9]
            end = pos + 10 + rdlength
            if end > len(wire):
                raise ValueError("truncated record data")
            records.append(Record(rtype, start, pos + 4, end, section))
            pos = end
    return qend, records
