"""The DNS front end's answer chain: query bytes in, answer bytes (or a miss to forward) out.

Each query goes through a short chain of stages around the one `Matcher`:

1. parse (by hand, `dnswire.parse_query`; the last 4,096 distinct queries are remembered by
   their bytes after the ID, as a device repeats itself): a malformed packet is dropped and
   counted;
2. fail-closed gate: with ``fail_closed`` set and no indicator set loaded (`ready` false) every
   query is REFUSED; fail-open (the default) serves and says so loudly in the log at start;
3. the Firefox canary ``use-application-dns.net`` gets NXDOMAIN, so Firefox keeps using the
   system resolver (this one) instead of switching itself to DNS over HTTPS around it;
4. the verdict (`enforcer.shim.verdict`): Block → NXDOMAIN (or the sinkhole address that
   serves the block page) with an SOA whose TTL and MINIMUM are ``blocked_ttl`` (10 s), so an
   unblock propagates as fast as a block. Warn, Alert and Audit are answered like allowed names
   (the DNS answer cannot show a page; the proxy shows the warning) but recorded as
   warned/audited. Allowed and ungoverned names go on;
5. the cache (`enforcer.shim.dns.cache`): a hit is the stored upstream answer with the query's
   ID and question patched in and its TTLs aged and capped at ``max_ttl`` (60 s);
6. forwarding to the upstream resolvers (`enforcer.shim.dns.upstream`); identical queries in
   flight share one upstream exchange. No upstream answering gives SERVFAIL.

Deep CNAME inspection: an upstream answer whose CNAME/DNAME chain leads to a blocked name
(``alias.allowed.example CNAME www.blocked.example``) is denied with the same answer as a direct
hit on the queried name, and its event names the chain's name that matched (with that
indicator and app). Every name of the chain is checked on every answer, cached or freshly
forwarded, against the live matcher, so a block added after the answer was cached applies at
once. A queried name that an Allowed indicator covers is not inspected (an admin's explicit
allow of the name wins, as in DNS blockers that skip inspection for allow-listed names).

The verdict is taken before the cache, so a name blocked (or a matcher swapped) between two
queries is blocked on the very next query, cached or not. The matcher is read from
``frontend.matcher`` on every query: the sync client may call ``matcher.add/remove`` between
queries (from the event loop, in ~1 ms steps so answers never wait long) or assign a whole new
`Matcher`.

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
every answer against. The sockets are `enforcer.shim.dns.server`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from enforcer.decide.matcher import Matcher, Verdict
from enforcer.models import Action, EventAction, NetworkEvent
from enforcer.shim.dns import wire as dnswire
from enforcer.shim.dns.cache import AnswerCache, CachedAnswer, CacheKey
from enforcer.shim.dns.upstream import Upstreams
from enforcer.shim.dns.wire import UDP_PLAIN_LIMIT
from enforcer.shim.verdict import EventBatch, EventRecorder, event_action

CANARY = "use-application-dns.net"
"""Firefox's DoH canary: an NXDOMAIN here keeps Firefox on the system resolver."""

SOURCE = "dns"
_QUESTION_MEMO = 4096
"""Parsed queries remembered by their bytes after the ID: a device asks the same few names
over and over, and a dict probe costs a tenth of parsing. Cleared when full (pure data: no
invalidation needed)."""
MAX_INFLIGHT = 2048
"""Distinct names asked upstream at once, at most (each exchange holds a socket)."""
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
    socket_mark: int = 0
    """``SO_MARK`` of the upstream sockets (0: none); interception exempts marked traffic."""


class Miss(NamedTuple):
    """A query that needs an upstream answer (`DnsFrontEnd.answer` returned it): what
    `DnsFrontEnd.forward` needs to answer it later."""

    key: CacheKey
    data: bytes
    qend: int
    edns: int
    tcp: bool
    peer: Any
    name: str
    evented: bool
    """An event was already recorded for this query (warned/audited)."""
    qtype: int
    """The question's type (a blocked chain is answered like a direct hit: by type)."""
    inspect: bool
    """Check the answer's CNAME/DNAME chain (no Allowed indicator covers the queried name)."""


Reply = Callable[[bytes], None]


class DnsFrontEnd:
    """The sinkhole's decisions, cache, counters and forwarding, independent of the sockets.

    `answer` turns a query into answer bytes at once when it can (blocked, cached, refused),
    or into a miss that `forward` resolves through the upstreams. `enforcer.shim.dns.server`
    binds it to UDP and TCP sockets; tests may call `answer` directly.
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
        self.events = EventRecorder(SOURCE, on_event) if on_event is not None else None
        self.event_batch: EventBatch | None = None
        """The event sink's batch interface (the reporter), when it has one: the UDP listener
        holds the events of one pass of datagrams and commits them before sending any answer."""
        self.on_answer: Callable[[str, str], None] | None = None
        """Called with (name, first address) of each upstream answer that has one, once per
        miss: interception maps addresses back to the names they were answered for."""
        self.ready = ready
        """An indicator set is loaded; with ``fail_closed`` every query is refused until then."""
        self.tcp_clients: dict[tuple[str, int], tuple[str, int]] = {}
        """Open TCP connections (kept by `enforcer.shim.dns.server`): each client's (address,
        port) -> the (address, port) it connected to, the resolver it asked when interception
        diverted it. A query's event names its client's address and port; this tells whether
        that is a TCP socket, and its other end finds it exactly."""
        self._responses = dnswire.Responses(self.settings.blocked_ttl, self.settings.sinkhole)
        self._gate_closed = self.settings.fail_closed
        self._cache = AnswerCache(self.settings.cache_size)
        self._upstreams = Upstreams(
            self.settings.upstreams, self.settings.upstream_timeout, self.settings.socket_mark
        )
        self._questions: dict[bytes, dnswire.ParsedQuery] = {}
        self._inflight: dict[CacheKey, list[tuple[Miss, Reply]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._queries = 0
        self._blocked = 0
        self._cache_hits = 0
        self._forwarded = 0
        self._malformed = 0
        self._upstream_errors = 0
        self._refused = 0
        self._alias_blocked = 0
        self._upstream_busy = 0

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
            "alias_blocked": self._alias_blocked,
            "upstream_busy": self._upstream_busy,
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
            events = self.events
            if action is _BLOCK:
                self._blocked += 1
                if events is not None:
                    events.record(
                        name,
                        EventAction.BLOCKED,
                        verdict,
                        client_ip=_client_ip(peer),
                        client_port=_client_port(peer),
                        dest_ip=self.settings.sinkhole or "",
                    )
                suffix = len(name) - len(verdict.indicator)
                return self._responses.blocked(data, qend, qtype, suffix, edns)
            if events is not None:
                events.record(
                    name,
                    event_action(verdict),
                    verdict,
                    client_ip=_client_ip(peer),
                    client_port=_client_port(peer),
                )
                evented = True
        key = (name, qkey)
        entry = self._cache.get(key)
        if entry is not None:
            now = time.monotonic()
            if now < entry.expires:
                self._cache_hits += 1
                if entry.aliases and action is not _ALLOWED:
                    hit = self._blocked_alias(entry.aliases)
                    if hit is not None:
                        return self._deny_alias(hit, data, qend, qtype, edns, peer)
                response = entry.reply(data, qend, edns, now)
                if not tcp and len(response) > (edns & 0xFFFF or UDP_PLAIN_LIMIT):
                    return dnswire.truncated(response, data, qend, edns)
                return response
            del self._cache[key]
        return Miss(key, data, qend, edns, tcp, peer, name, evented, qtype, action is not _ALLOWED)

    def _blocked_alias(self, aliases: tuple[str, ...]) -> tuple[str, Verdict] | None:
        """The first name of a CNAME/DNAME chain that the live matcher blocks, with its verdict."""
        verdict_of = self.matcher.verdict_normalized
        for alias in aliases:
            verdict = verdict_of(alias)
            if verdict.action is _BLOCK:
                return alias, verdict
        return None

    def _deny_alias(
        self, hit: tuple[str, Verdict], data: bytes, qend: int, qtype: int, edns: int, peer: Any
    ) -> bytes:
        """The blocked answer for a query whose chain leads to a blocked name; its event."""
        alias, verdict = hit
        self._blocked += 1
        self._alias_blocked += 1
        if self.events is not None:
            self.events.record(
                alias,
                EventAction.BLOCKED,
                verdict,
                client_ip=_client_ip(peer),
                client_port=_client_port(peer),
                dest_ip=self.settings.sinkhole or "",
            )
        # The SOA goes at the queried name: the blocked name is not a suffix of it.
        return self._responses.blocked(data, qend, qtype, 0, edns)

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
        """Resolve a miss through the upstreams and call ``reply`` with the answer bytes.

        At most `MAX_INFLIGHT` distinct names are asked upstream at once (each holds a socket):
        a burst of random names beyond that gets SERVFAIL at once, counted, instead of
        exhausting the process's file descriptors.
        """
        waiters = self._inflight.get(miss.key)
        if waiters is not None:
            waiters.append((miss, reply))
            return
        if len(self._inflight) >= MAX_INFLIGHT:
            self._upstream_busy += 1
            with contextlib.suppress(OSError):
                reply(self._responses.servfail(miss.data, miss.qend, miss.edns))
            return
        self._inflight[miss.key] = [(miss, reply)]
        task = asyncio.get_running_loop().create_task(self._resolve(miss))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, first: Miss) -> None:
        self._forwarded += 1
        wire = await self._upstreams.ask(first.data[12 : first.qend], first.edns)
        waiters = self._inflight.pop(first.key, [])
        entry: CachedAnswer | None = None
        if wire is not None:
            try:
                entry = CachedAnswer(wire, time.monotonic(), self.settings.max_ttl)
            except ValueError:
                entry = None
        hit: tuple[str, Verdict] | None = None
        if entry is None:
            self._upstream_errors += 1
        else:
            self._cache.put(first.key, entry)
            if entry.aliases and first.inspect:
                hit = self._blocked_alias(entry.aliases)
            if self.on_answer is not None and entry.address:
                # A chain into a blocked name: its address is that name's, for interception.
                self.on_answer(hit[0] if hit is not None else first.name, entry.address)
        for miss, reply in waiters:
            if entry is None:
                response = self._responses.servfail(miss.data, miss.qend, miss.edns)
            elif hit is not None:
                response = self._deny_alias(
                    hit, miss.data, miss.qend, miss.qtype, miss.edns, miss.peer
                )
            else:
                response = entry.reply(miss.data, miss.qend, miss.edns, time.monotonic())
                limit = miss.edns & 0xFFFF or UDP_PLAIN_LIMIT
                if not miss.tcp and len(response) > limit:
                    response = dnswire.truncated(response, miss.data, miss.qend, miss.edns)
                if self.events is not None and not miss.evented:
                    self.events.record(
                        miss.name,
                        EventAction.ALLOWED,
                        self.matcher.verdict_normalized(miss.name),
                        client_ip=_client_ip(miss.peer),
                        client_port=_client_port(miss.peer),
                        dest_ip=entry.address,
                    )
            with contextlib.suppress(OSError):
                reply(response)

    async def aclose(self) -> None:
        """Cancel upstream exchanges still in flight."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _client_ip(peer: Any) -> str:
    return peer[0] if isinstance(peer, tuple) and peer else ""


def _client_port(peer: Any) -> int:
    """The query's source port: with its address, how interception finds the process."""
    return peer[1] if isinstance(peer, tuple) and len(peer) > 1 else 0
