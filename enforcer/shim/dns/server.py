"""The shim's DNS sinkhole: answers blocked names itself, forwards the rest, caches with short TTLs.

A device points its resolver at this server (UDP and TCP on one address). Each query goes
through a short chain of stages around the one `Matcher`:

1. parse (by hand, `dnswire.parse_query`; the last 4,096 distinct queries are remembered by
   their bytes after the ID, as a device repeats itself): a malformed packet is dropped and
   counted;
2. fail-closed gate: with ``fail_closed`` set and no indicator set loaded (`ready` false) every
   query is REFUSED; fail-open (the default) serves and says so loudly in the log at start;
3. the Firefox canary ``use-application-dns.net`` gets NXDOMAIN, so Firefox keeps using the
   system resolver (this one) instead of switching itself to DNS over HTTPS around it;
4. the verdict: Block → NXDOMAIN (or the sinkhole address that serves the block page) with
   an SOA whose TTL and MINIMUM are ``blocked_ttl`` (10 s), so an unblock propagates as fast as
   a block. Warn, Alert and Audit are answered like allowed names (the DNS answer cannot show a
   page; the proxy shows the warning) but recorded as warned/audited. Allowed and ungoverned
   names go on;
5. the cache, keyed by (name, type, class, DO bit): a hit is the stored upstream answer with
   the query's ID and question patched in and every TTL decremented by the entry's age and
   capped at ``max_ttl`` (60 s), so a client's own cache cannot keep a newly blocked name
   reachable for long. The entry itself lives as long as the upstream TTLs say;
6. forwarding to the upstream resolvers (the one that answered last first), over UDP from a
   fresh socket with a timeout and over TCP when the answer is truncated; identical queries in
   flight share one upstream exchange. No upstream answering gives SERVFAIL.

The verdict is taken before the cache, so a name blocked (or a matcher swapped) between two
queries is blocked on the very next query, cached or not. The matcher is read from
``frontend.matcher`` on every query: the sync client may call ``matcher.add/remove`` between
queries (from the event loop; `apply_delta` does it in ~1 ms steps so answers never wait long) or
assign a whole new `Matcher`.

Events (``on_event``): every answer could be an event, but building a `NetworkEvent` (a
dataclass and a timestamp) costs about as much as the answer itself. So events are built for
blocked, warned and audited answers (each one: those are what an admin reviews) and for the
answers of *forwarded* queries (a cache miss, with the first address of the answer), but not
for allowed answers served from the cache. A name in steady use thus gives one event per
lifetime of its cache entry (the upstream TTL), enough for discovery to see the app in use,
at no cost per cached answer.

EDNS: a query's OPT record is read for its UDP payload size and DO bit; the answer carries a
minimal OPT (payload 1232, no options) exactly when the query had one. Upstream OPT records are
stripped before caching and replaced by that minimal one. A query with a non-zero EDNS version
is answered as version 0 (no BADVERS). Queries with an additional record other than one OPT
(for example TSIG) are counted as malformed: a stub resolver's clients do not sign queries.

Hot path: a blocked or cached answer is a handful of byte slices joined, with no dnspython
objects and no logging calls. Upstream answers are walked by hand too, once per miss
(`dnswire.walk_records`, strict bounds checks); dnspython is the reference the tests check
every answer against.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import ipaddress
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import structlog

from enforcer.decide.matcher import MatchEntry, Matcher
from enforcer.models import Action, EventAction, NetworkEvent
from enforcer.shim.dns import wire as dnswire
from enforcer.shim.dns.wire import EDNS_DO, MIN_OPT, TYPE_A, TYPE_AAAA, TYPE_OPT, UDP_PLAIN_LIMIT

log = structlog.get_logger(__name__)
_T = TypeVar("_T")

CANARY = "use-application-dns.net"
"""Firefox's DoH canary: an NXDOMAIN here keeps Firefox on the system resolver."""

_TCP_IDLE = 10.0
_UDP_MAX_QUERY = 4096
"""Largest UDP query read; longer datagrams are cut, fail to parse and count as malformed."""
_QUESTION_MEMO = 4096
"""Parsed queries remembered by their bytes after the ID: a device asks the same few names
over and over, and a dict probe costs a tenth of parsing. Cleared when full (pure data: no
invalidation needed)."""
_UDP_BATCH = 64
"""Datagrams read per wake-up of the event loop: amortises the loop's overhead under load."""
_EVENT_ACTIONS = {
    Action.WARN: EventAction.WARNED,
    Action.AUDIT: EventAction.AUDITED,
    Action.ALERT: EventAction.AUDITED,
}
_BLOCK = Action.BLOCK
_ALLOWED = Action.ALLOWED


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """How the DNS front end listens, forwards and answers."""

    listen_host: str = "127.0.0.1"
    """Address to listen on (UDP and TCP)."""
    listen_port: int = 53
    """Port to listen on; 0 picks a free one (the same for UDP and TCP)."""
    upstreams: tuple[tuple[str, int], ...] = ()
    """Resolvers to forward to, (address, port) pairs; the one that answered last is tried
    first, then the others in order."""
    blocked_ttl: int = 10
    """TTL (and SOA MINIMUM) of blocked answers: how long a client may cache a block."""
    max_ttl: int = 60
    """Largest TTL handed to a client for a forwarded answer, whatever the upstream says."""
    sinkhole: str | None = None
    """Address (IPv4 or IPv6) answered for blocked names; None answers NXDOMAIN."""
    fail_closed: bool = False
    """Refuse every query while no indicator set is loaded (default: serve, fail-open)."""
    upstream_timeout: float = 2.0
    """Seconds to wait for one upstream before trying the next."""
    cache_size: int = 100_000
    """Most answers kept; the oldest is dropped first."""


class Miss(NamedTuple):
    """A query that needs an upstream answer (`DnsFrontEnd.answer` returned it): what
    `DnsFrontEnd.forward` needs to answer it later."""

    key: tuple[str, int]
    data: bytes
    qend: int
    edns: int
    tcp: bool
    peer: Any
    name: str
    evented: bool
    """An event was already recorded for this query (warned/audited)."""


Reply = Callable[[bytes], None]


class _Answer:
    """An upstream answer ready to be served many times: the cache entry.

    The message is kept as bytes without its OPT record, split around the question; only the
    TTL fields change with age, so the patched bytes are kept for the current age (in whole
    seconds) and recomputed at most once a second.
    """

    __slots__ = (
        "add_opt",
        "address",
        "age",
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


class DnsFrontEnd:
    """The sinkhole's decisions, cache, counters and forwarding, independent of the sockets.

    `answer` turns a query into answer bytes at once when it can (blocked, cached, refused),
    or into a miss that `forward` resolves through the upstreams. `run_dns` binds it to UDP and
    TCP sockets; tests may call `answer` directly.
    """

    def __init__(
        self,
        matcher: Matcher,
        settings: DnsSettings | None = None,
        *,
        on_event: Callable[[NetworkEvent], None] | None = None,
        ready: bool = True,
    ) -> None:
        self.matcher = matcher
        """The live matcher: may be updated in place or replaced while serving."""
        self.settings = settings or DnsSettings()
        self.on_event = on_event
        self.ready = ready
        """An indicator set is loaded; with ``fail_closed`` every query is refused until then."""
        self._responses = dnswire.Responses(self.settings.blocked_ttl, self.settings.sinkhole)
        self._gate_closed = self.settings.fail_closed
        self._cache: dict[tuple[str, int], _Answer] = {}
        self._questions: dict[bytes, dnswire.ParsedQuery] = {}
        self._inflight: dict[tuple[str, int], list[tuple[Miss, Reply]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._preferred = 0
        self._queries = 0
        self._blocked = 0
        self._cache_hits = 0
        self._forwarded = 0
        self._malformed = 0
        self._upstream_errors = 0
        self._refused = 0

    @property
    def counters(self) -> dict[str, int]:
        """Counts since start: queries, blocked, cache_hits, forwarded, malformed, ..."""
        return {
            "queries": self._queries,
            "blocked": self._blocked,
            "cache_hits": self._cache_hits,
            "forwarded": self._forwarded,
            "malformed": self._malformed,
            "upstream_errors": self._upstream_errors,
            "refused": self._refused,
            "cached_answers": len(self._cache),
        }

    def answer(self, data: bytes, peer: Any, tcp: bool) -> bytes | Miss | None:
        """Answer bytes, a miss to `forward`, or None to drop (malformed; counted)."""
        self._queries += 1
        after_id = data[2:]
        question = self._questions.get(after_id)
        if question is None:
            question = self._parse(data, after_id)
            if question is None:
                return self._unparsed(data)
        name, qend, qtype, edns, qkey = question
        if self._gate_closed and not self.ready:
            self._refused += 1
            return self._responses.refused(data, qend, edns)
        if name == CANARY:
            return self._responses.nxdomain(data, qend, edns)
        verdict = self.matcher.verdict_normalized(name)
        action = verdict.action
        evented = False
        if action is not None and action is not _ALLOWED:
            if action is _BLOCK:
                self._blocked += 1
                if self.on_event is not None:
                    self._emit(
                        name,
                        EventAction.BLOCKED,
                        verdict.indicator,
                        verdict.app_id,
                        peer,
                        self.settings.sinkhole or "",
                    )
                suffix = len(name) - len(verdict.indicator)
                return self._responses.blocked(data, qend, qtype, suffix, edns)
            if self.on_event is not None:
                self._emit(name, _EVENT_ACTIONS[action], verdict.indicator, verdict.app_id, peer)
                evented = True
        key = (name, qkey)
        entry = self._cache.get(key)
        if entry is not None:
            now = time.monotonic()
            if now < entry.expires:
                self._cache_hits += 1
                response = entry.reply(data, qend, edns, now)
                if not tcp and len(response) > (edns & 0xFFFF or UDP_PLAIN_LIMIT):
                    return dnswire.truncated(response, data, qend, edns)
                return response
            del self._cache[key]
        return Miss(key, data, qend, edns, tcp, peer, name, evented)

    def _parse(self, data: bytes, after_id: bytes) -> dnswire.ParsedQuery | None:
        """Parse a query not seen lately and remember it by its bytes after the ID."""
        question = dnswire.parse_query(data)
        if question is not None:
            questions = self._questions
            if len(questions) >= _QUESTION_MEMO:
                questions.clear()
            questions[after_id] = question
        return question

    def _unparsed(self, data: bytes) -> bytes | None:
        if dnswire.is_plain_query_header(data):
            return dnswire.notimp(data)
        self._malformed += 1
        return None

    def forward(self, miss: Miss, reply: Reply) -> None:
        """Resolve a miss through the upstreams and call ``reply`` with the answer bytes."""
        waiters = self._inflight.get(miss.key)
        if waiters is not None:
            waiters.append((miss, reply))
            return
        self._inflight[miss.key] = [(miss, reply)]
        task = asyncio.get_running_loop().create_task(self._resolve(miss))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, first: Miss) -> None:
        self._forwarded += 1
        wire = await self._ask_upstreams(first)
        waiters = self._inflight.pop(first.key, [])
        entry: _Answer | None = None
        if wire is not None:
            try:
                entry = _Answer(wire, time.monotonic(), self.settings.max_ttl)
            except ValueError:
                entry = None
        if entry is None:
            self._upstream_errors += 1
        elif entry.cacheable:
            cache = self._cache
            if len(cache) >= self.settings.cache_size:
                del cache[next(iter(cache))]
            cache[first.key] = entry
        for miss, reply in waiters:
            if entry is None:
                response = self._responses.servfail(miss.data, miss.qend, miss.edns)
            else:
                response = entry.reply(miss.data, miss.qend, miss.edns, time.monotonic())
                limit = miss.edns & 0xFFFF or UDP_PLAIN_LIMIT
                if not miss.tcp and len(response) > limit:
                    response = dnswire.truncated(response, miss.data, miss.qend, miss.edns)
                if self.on_event is not None and not miss.evented:
                    verdict = self.matcher.verdict_normalized(miss.name)
                    self._emit(
                        miss.name,
                        EventAction.ALLOWED,
                        verdict.indicator,
                        verdict.app_id,
                        miss.peer,
                        entry.address,
                    )
            with contextlib.suppress(OSError):
                reply(response)

    async def _ask_upstreams(self, miss: Miss) -> bytes | None:
        """The first well-formed upstream answer to the miss's question, or None."""
        question = miss.data[12 : miss.qend]
        query_id = secrets.randbits(16)
        do_bit = 0x80 if miss.edns & EDNS_DO else 0
        opt = MIN_OPT[:7] + bytes((do_bit,)) + MIN_OPT[8:]
        query = query_id.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01"
        query += question + opt
        timeout = self.settings.upstream_timeout
        upstreams = self.settings.upstreams
        # Start with the upstream that answered last, so a dead first one costs one timeout,
        # not one per miss.
        first = self._preferred
        for index in [*range(first, len(upstreams)), *range(first)]:
            host, port = upstreams[index]
            try:
                wire = await _udp_exchange(host, port, query, timeout)
                if wire[2] & 0x02:
                    wire = await _tcp_exchange(host, port, query, timeout)
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                continue
            if _answers(wire, query):
                self._preferred = index
                return wire
        return None

    def _emit(
        self,
        name: str,
        action: EventAction,
        indicator: str,
        app_id: str,
        peer: Any,
        dest_ip: str = "",
    ) -> None:
        assert self.on_event is not None
        client_ip = peer[0] if isinstance(peer, tuple) and peer else ""
        event = NetworkEvent(
            time=dt.datetime.now(dt.UTC),
            source="dns",
            domain=name,
            action=action,
            indicator=indicator,
            app_id=app_id,
            dest_ip=dest_ip,
            client_ip=client_ip,
        )
        try:
            self.on_event(event)
        except Exception:  # a broken event sink must not stop name resolution
            log.exception("dns.on_event_failed")

    async def aclose(self) -> None:
        """Cancel upstream exchanges still in flight."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _first_address(wire: bytes, records: list[dnswire.Record]) -> str:
    """The first A or AAAA address of the answer section, for the event's dest_ip."""
    for r in records:
        if r.section == 1 and r.rtype in (TYPE_A, TYPE_AAAA):
            with contextlib.suppress(ValueError):
                return str(ipaddress.ip_address(wire[r.ttl_at + 6 : r.end]))
    return ""


def _answers(wire: bytes, query: bytes) -> bool:
    """The upstream message is a response to ``query``: same ID, QR set, same question."""
    qend = len(query) - len(MIN_OPT)
    return (
        len(wire) >= qend
        and wire[:2] == query[:2]
        and bool(wire[2] & 0x80)
        and wire[4:6] == b"\x00\x01"
        and wire[12:qend].lower() == query[12:qend].lower()
    )


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


async def _udp_exchange(host: str, port: int, query: bytes, timeout: float) -> bytes:
    """Send one query from a fresh socket (a random source port) and wait for its answer."""
    loop = asyncio.get_running_loop()
    with socket.socket(_family(host), socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((host, port))
        await loop.sock_sendall(sock, query)
        async with asyncio.timeout(timeout):
            while True:
                wire = await loop.sock_recv(sock, 65535)
                if wire[:2] == query[:2]:
                    return wire


async def _tcp_exchange(host: str, port: int, query: bytes, timeout: float) -> bytes:
    """One query over TCP (after a truncated UDP answer)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(len(query).to_bytes(2, "big") + query)
            length = int.from_bytes(await reader.readexactly(2), "big")
            return await reader.readexactly(length)
        finally:
            writer.close()


class _UdpListener:
    """Reads datagrams straight from the socket, many per event-loop wake-up."""

    def __init__(self, frontend: DnsFrontEnd, sock: socket.socket) -> None:
        self._frontend = frontend
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        recvfrom = self._sock.recvfrom
        sendto = self._sock.sendto
        answer = self._frontend.answer
        for _ in range(_UDP_BATCH):
            try:
                data, addr = recvfrom(_UDP_MAX_QUERY)
            except OSError:  # BlockingIOError: drained; anything else: try again on next wake-up
                return
            response = answer(data, addr, False)
            if response is None:
                continue
            if isinstance(response, bytes):
                try:  # noqa: SIM105 (contextlib.suppress costs a Python call per answer)
                    sendto(response, addr)
                except OSError:
                    pass
            else:
                self._frontend.forward(response, _UdpReply(self._sock, addr))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._sock.close()


class _UdpReply:
    """Sends a late (forwarded) answer to one UDP client."""

    __slots__ = ("_addr", "_sock")

    def __init__(self, sock: socket.socket, addr: Any) -> None:
        self._sock = sock
        self._addr = addr

    def __call__(self, response: bytes) -> None:
        if self._sock.fileno() >= 0:
            self._sock.sendto(response, self._addr)


async def _serve_tcp_client(
    frontend: DnsFrontEnd,
    connections: set[asyncio.StreamWriter],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """Answer length-prefixed queries on one connection until it is idle or closed (RFC 7766)."""
    peer = writer.get_extra_info("peername")
    connections.add(writer)

    def send(response: bytes) -> None:
        if not writer.is_closing():
            writer.write(len(response).to_bytes(2, "big") + response)

    try:
        while True:
            async with asyncio.timeout(_TCP_IDLE):
                length = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(length)
            response = frontend.answer(data, peer, True)
            if response is None:
                continue
            if isinstance(response, bytes):
                send(response)
                await writer.drain()
            else:
                frontend.forward(response, send)
    except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
        pass
    finally:
        connections.discard(writer)
        writer.close()


class DnsServerHandle:
    """A running DNS server (UDP and TCP listeners); `close` stops it."""

    def __init__(
        self,
        frontend: DnsFrontEnd,
        udp: _UdpListener,
        tcp: asyncio.Server,
        connections: set[asyncio.StreamWriter],
        address: tuple[str, int],
    ) -> None:
        self.frontend = frontend
        self.address = address
        """The (host, port) actually bound: useful when the port asked for was 0."""
        self._udp = udp
        self._tcp = tcp
        self._connections = connections

    def close(self) -> None:
        """Stop listening and close open TCP connections (answers in flight are dropped)."""
        self._udp.close()
        self._tcp.close()
        for writer in list(self._connections):
            writer.close()

    async def wait_closed(self) -> None:
        """Wait until the listeners and the upstream exchanges are gone."""
        await self._tcp.wait_closed()
        await self.frontend.aclose()

    async def __aenter__(self) -> DnsServerHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same port (with port 0, a free one for both)."""
    family = _family(host)
    for _ in range(20):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(OSError):
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            udp.bind((host, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            if port:
                raise
            continue
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    raise OSError(f"no free port for UDP and TCP on {host}")


async def run_dns(
    frontend: DnsFrontEnd, host: str | None = None, port: int | None = None
) -> DnsServerHandle:
    """Start answering on ``host:port`` (default: the settings'), UDP and TCP; returns at once."""
    settings = frontend.settings
    host = settings.listen_host if host is None else host
    port = settings.listen_port if port is None else port
    udp_sock, tcp_sock = _bind_pair(host, port)
    udp = _UdpListener(frontend, udp_sock)
    connections: set[asyncio.StreamWriter] = set()
    tcp = await asyncio.start_server(
        functools.partial(_serve_tcp_client, frontend, connections), sock=tcp_sock, backlog=128
    )
    address = udp_sock.getsockname()[:2]
    log.info(
        "dns.listening",
        address=f"{address[0]}:{address[1]}",
        upstreams=[f"{h}:{p}" for h, p in settings.upstreams],
        blocked_ttl=settings.blocked_ttl,
        max_ttl=settings.max_ttl,
        sinkhole=settings.sinkhole,
        fail_closed=settings.fail_closed,
        indicators=len(frontend.matcher),
    )
    if not settings.upstreams:
        log.warning("dns.no_upstreams", detail="names that are not blocked get SERVFAIL")
    if not frontend.ready:
        if settings.fail_closed:
            log.warning("dns.fail_closed", detail="no indicator set yet: refusing every query")
        else:
            log.error(
                "dns.fail_open",
                detail="no indicator set yet: answering every query, nothing is blocked",
            )
    return DnsServerHandle(frontend, udp, tcp, connections, (address[0], address[1]))


async def serve(frontend: DnsFrontEnd, host: str | None = None, port: int | None = None) -> None:
    """Run the DNS server until cancelled (the ``enforcer shim`` command's DNS task)."""
    handle = await run_dns(frontend, host, port)
    try:
        await asyncio.Event().wait()
    finally:
        handle.close()
        await handle.wait_closed()


async def apply_delta(
    matcher: Matcher,
    add: Iterable[MatchEntry] = (),
    remove: Iterable[str] = (),
    *,
    step: float = 0.001,
) -> None:
    """Apply an indicator delta to a live matcher without stalling the answers.

    Removals first, then additions, in steps of about ``step`` seconds, yielding to the event
    loop between steps: a 100,000-entry delta (about 150 ms of work with a million entries)
    becomes some 150 steps with queries answered in between, so no answer waits for more than
    about one step. The clock is read every 100 entries, not per entry.
    """
    await _paced(remove, matcher.remove, step)
    await _paced(add, matcher.add, step)


async def _paced(items: Iterable[_T], apply: Callable[[_T], None], step: float) -> None:
    """Call ``apply`` on each item, yielding to the event loop every ``step`` seconds."""
    clock = time.perf_counter
    deadline = clock() + step
    for count, item in enumerate(items, start=1):
        apply(item)
        if count % 100 == 0 and clock() >= deadline:
            await asyncio.sleep(0)
            deadline = clock() + step
