"""The DNS sinkhole as a client sees it: real queries (dnspython, dig) to a server on 127.0.0.1."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enforcer.decide.matcher import MatchEntry, Matcher
from enforcer.models import ALL_DEVICES, Action, EventAction, Indicator, NetworkEvent
from enforcer.shim.dns import wire as dnswire
from enforcer.shim.dns.answer import DnsFrontEnd, DnsSettings
from enforcer.shim.dns.cache import CachedAnswer
from enforcer.shim.sync import DeviceIndicators, Update

from .conftest import BIG_NAME, ShimServer

TIMEOUT = 5.0


def blocking_matcher() -> Matcher:
    return Matcher(
        [
            MatchEntry("blocked.test", Action.BLOCK, "evilapp"),
            MatchEntry("ok.blocked.test", Action.ALLOWED),
            MatchEntry("warn.example.test", Action.WARN, "warnapp"),
            MatchEntry("audit.example.test", Action.AUDIT, "auditapp"),
        ]
    )


def ask(
    server: ShimServer, name: str, rdtype: str = "A", *, tcp: bool = False, **kw: object
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, "127.0.0.1", port=server.port, timeout=TIMEOUT)


def soa_ttl(response: dns.message.Message) -> int:
    (soa,) = [r for r in response.authority if r.rdtype == dns.rdatatype.SOA]
    assert soa[0].minimum == soa.ttl
    return soa.ttl


@pytest.mark.parametrize("name", ["blocked.test", "a.b.blocked.test", "BLOCKED.Test."])
def test_blocked_name_and_subdomains_get_nxdomain_with_short_soa(start_shim, name):
    server = start_shim(blocking_matcher())
    response = ask(server, name)
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert not response.answer
    assert soa_ttl(response) == 10
    assert response.authority[0].name.to_text().lower() == "blocked.test."
    assert response.question[0].name.to_text() == dns.name.from_text(name).to_text()
    assert server.frontend.counters["blocked"] == 1


def test_blocked_ttl_is_configurable_and_edns_is_echoed(start_shim):
    server = start_shim(blocking_matcher(), blocked_ttl=5)
    response = ask(server, "x.blocked.test", use_edns=0)
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert soa_ttl(response) == 5
    assert response.edns == 0
    plain = ask(server, "x.blocked.test")
    assert plain.edns == -1


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed")
def test_dig_sees_nxdomain_with_soa(start_shim):
    server = start_shim(blocking_matcher())
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(server.port), "www.blocked.test", "A", "+time=5"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "status: NXDOMAIN" in out
    soa_lines = [line for line in out.splitlines() if "\tSOA\t" in line or " SOA " in line]
    assert soa_lines and soa_lines[0].split()[1] == "10", out


def test_sinkhole_mode_answers_the_block_page_address(start_shim):
    server = start_shim(blocking_matcher(), sinkhole="192.0.2.99")
    response = ask(server, "www.blocked.test")
    assert response.rcode() == dns.rcode.NOERROR
    (rrset,) = response.answer
    assert [r.address for r in rrset] == ["192.0.2.99"]
    assert rrset.ttl == 10
    other = ask(server, "www.blocked.test", "AAAA")
    assert other.rcode() == dns.rcode.NOERROR and not other.answer
    assert soa_ttl(other) == 10


def test_allowed_name_is_forwarded_capped_and_then_cached(start_shim, upstream):
    server = start_shim(blocking_matcher())
    first = ask(server, "www.example.test")
    assert [r.address for r in first.answer[0]] == ["192.0.2.1"]
    assert first.answer[0].ttl == 60
    second = ask(server, "WWW.example.test.")
    assert second.answer[0].ttl <= 60
    assert second.question[0].name.to_text() == "WWW.example.test."
    assert upstream.queries.count("www.example.test.") == 1
    counters = server.frontend.counters
    assert counters["forwarded"] == 1
    assert counters["cache_hits"] == 1


def test_max_ttl_is_configurable(start_shim):
    server = start_shim(Matcher(), max_ttl=30)
    assert ask(server, "a.example.test").answer[0].ttl == 30
    assert ask(server, "a.example.test").answer[0].ttl <= 30


def test_upstream_nxdomain_is_forwarded(start_shim):
    server = start_shim(Matcher())
    response = ask(server, "gone.nx.test")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.authority[0].ttl == 60


def test_firefox_canary_gets_nxdomain(start_shim, upstream):
    server = start_shim(Matcher())
    assert ask(server, "use-application-dns.net").rcode() == dns.rcode.NXDOMAIN
    assert not upstream.queries


def test_tcp_works(start_shim):
    server = start_shim(blocking_matcher())
    assert ask(server, "blocked.test", tcp=True).rcode() == dns.rcode.NXDOMAIN
    response = ask(server, "tcp.example.test", tcp=True)
    assert response.answer[0][0].address == "192.0.2.1"


def test_stopping_closes_idle_tcp_connections(start_shim):
    server = start_shim(blocking_matcher())
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        wire = dns.message.make_query("blocked.test", "A").to_wire()
        sock.sendall(len(wire).to_bytes(2, "big") + wire)
        dns.query.receive_tcp(sock, time.time() + TIMEOUT)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 5
        assert sock.recv(10) == b""


def test_truncated_upstream_answer_is_fetched_over_tcp(start_shim, upstream):
    server = start_shim(Matcher())
    udp = ask(server, BIG_NAME, use_edns=0, payload=4096)
    assert len(udp.answer[0]) == 100
    assert upstream.tcp_queries == [BIG_NAME]
    small = ask(server, BIG_NAME)
    assert small.flags & dns.flags.TC
    assert len(ask(server, BIG_NAME, tcp=True).answer[0]) == 100


def test_allowed_entry_under_a_blocked_parent_resolves(start_shim):
    server = start_shim(blocking_matcher())
    response = ask(server, "www.ok.blocked.test")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer[0][0].address == "192.0.2.1"


def test_matcher_updates_while_serving_apply_to_the_next_query(start_shim):
    matcher = Matcher()
    server = start_shim(matcher)
    assert ask(server, "late.example.test").rcode() == dns.rcode.NOERROR
    server.run(lambda: matcher.add(MatchEntry("late.example.test", Action.BLOCK)))
    assert ask(server, "late.example.test").rcode() == dns.rcode.NXDOMAIN
    server.run(lambda: matcher.remove("late.example.test"))
    assert ask(server, "late.example.test").rcode() == dns.rcode.NOERROR
    swapped = Matcher([MatchEntry("example.test", Action.BLOCK)])
    server.run(lambda: setattr(server.frontend, "matcher", swapped))
    assert ask(server, "late.example.test").rcode() == dns.rcode.NXDOMAIN


def test_a_sync_delta_applied_in_steps_reaches_the_live_server(start_shim):
    matcher = Matcher()
    server = start_shim(matcher)
    held = DeviceIndicators(groups=(), step=0.0005)
    adds = [Indicator(f"d{i}.delta.test", Action.BLOCK) for i in range(5000)]
    server.call(held.apply(Update(1, False, adds, []), matcher))
    assert ask(server, "x.d4999.delta.test").rcode() == dns.rcode.NXDOMAIN
    removes = [(ALL_DEVICES, ind.value) for ind in adds]
    server.call(held.apply(Update(2, False, [], removes), matcher))
    assert len(matcher) == 0


def test_fail_closed_refuses_until_ready(start_shim):
    server = start_shim(blocking_matcher(), ready=False, fail_closed=True)
    assert ask(server, "www.example.test").rcode() == dns.rcode.REFUSED
    assert ask(server, "blocked.test").rcode() == dns.rcode.REFUSED
    server.run(lambda: setattr(server.frontend, "ready", True))
    assert ask(server, "www.example.test").rcode() == dns.rcode.NOERROR
    assert ask(server, "blocked.test").rcode() == dns.rcode.NXDOMAIN


def test_fail_open_serves_before_ready(start_shim):
    server = start_shim(Matcher(), ready=False)
    assert ask(server, "www.example.test").rcode() == dns.rcode.NOERROR


def test_dead_upstream_gives_servfail(start_shim):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as unused:
        unused.bind(("127.0.0.1", 0))
        dead = unused.getsockname()[1]
    server = start_shim(Matcher(), upstreams=(("127.0.0.1", dead),), upstream_timeout=0.3)
    assert ask(server, "www.example.test").rcode() == dns.rcode.SERVFAIL
    assert server.frontend.counters["upstream_errors"] == 1


def test_a_silent_upstream_is_skipped_once_another_answered(start_shim, upstream):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never read: queries to it time out
        server = start_shim(
            Matcher(),
            upstreams=(silent.getsockname(), ("127.0.0.1", upstream.port)),
            upstream_timeout=1.0,
        )
        started = time.monotonic()
        assert ask(server, "one.example.test").answer[0][0].address == "192.0.2.1"
        assert time.monotonic() - started >= 1.0
        started = time.monotonic()
        assert ask(server, "two.example.test").answer[0][0].address == "192.0.2.1"
        assert time.monotonic() - started < 0.9


def test_events(start_shim):
    events: list[NetworkEvent] = []
    server = start_shim(blocking_matcher(), events=events)
    ask(server, "x.blocked.test")
    ask(server, "warn.example.test")
    ask(server, "audit.example.test")
    ask(server, "free.example.test")
    ask(server, "free.example.test")  # a cache hit: no event
    got = [(e.domain, e.action, e.indicator, e.app_id) for e in events]
    assert got == [
        ("x.blocked.test", EventAction.BLOCKED, "blocked.test", "evilapp"),
        ("warn.example.test", EventAction.WARNED, "warn.example.test", "warnapp"),
        ("audit.example.test", EventAction.AUDITED, "audit.example.test", "auditapp"),
        ("free.example.test", EventAction.ALLOWED, "", ""),
    ]
    assert events[-1].dest_ip == "192.0.2.1"
    assert all(e.source == "dns" and e.client_ip == "127.0.0.1" for e in events)


def test_a_cname_chain_into_a_blocked_name_is_denied_like_a_direct_hit(start_shim, upstream):
    """Deep CNAME inspection: `alias.cname.test CNAME mid.example.test CNAME cdn.blocked.test`
    gets the blocked answer of the queried name, forwarded or cached; the event names the name
    of the chain that matched, with its indicator and app."""
    events: list[NetworkEvent] = []
    server = start_shim(blocking_matcher(), events=events)
    direct = ask(server, "x.blocked.test")
    for _ in range(2):  # forwarded, then from the cache
        response = ask(server, "alias.cname.test")
        assert response.rcode() == dns.rcode.NXDOMAIN and not response.answer
        assert soa_ttl(response) == soa_ttl(direct)
        assert response.authority[0].name.to_text() == "alias.cname.test."
    assert upstream.queries.count("alias.cname.test.") == 1
    blocked = [(e.domain, e.action, e.indicator, e.app_id) for e in events[1:]]
    assert blocked == [("cdn.blocked.test", EventAction.BLOCKED, "blocked.test", "evilapp")] * 2
    assert server.frontend.counters["alias_blocked"] == 2
    # A DNAME into the blocked domain, AAAA too (no address in the answer at all).
    assert ask(server, "y.dname.test").rcode() == dns.rcode.NXDOMAIN
    assert ask(server, "y.dname.test", "AAAA").rcode() == dns.rcode.NXDOMAIN
    assert events[-1].domain == "blocked.test", "the DNAME target matched first"
    # A chain through allowed names only is answered as the upstream said.
    safe = ask(server, "safe.cname.test")
    assert safe.rcode() == dns.rcode.NOERROR and safe.answer[-1][0].address == "192.0.2.66"


def test_a_name_blocked_after_its_chain_was_cached_is_denied_at_once(start_shim):
    matcher = Matcher([MatchEntry("unrelated.test", Action.BLOCK)])
    server = start_shim(matcher)
    assert ask(server, "late.cname.test").answer[-1][0].address == "192.0.2.66"
    server.frontend.matcher.add(MatchEntry("cdn.blocked.test", Action.BLOCK, "cdnapp"))
    assert ask(server, "late.cname.test").rcode() == dns.rcode.NXDOMAIN


def test_an_explicitly_allowed_name_is_not_inspected(start_shim):
    matcher = blocking_matcher()
    matcher.add(MatchEntry("kept.cname.test", Action.ALLOWED))
    server = start_shim(matcher)
    for _ in range(2):
        assert ask(server, "kept.cname.test").answer[-1][0].address == "192.0.2.66"


def test_sinkhole_mode_answers_a_blocked_chain_with_the_block_page_address(start_shim):
    server = start_shim(blocking_matcher(), sinkhole="10.9.9.9")
    response = ask(server, "alias.cname.test")
    assert [r.address for r in response.answer[0]] == ["10.9.9.9"]
    assert response.answer[0].name.to_text() == "alias.cname.test."


@given(st.binary(max_size=300), st.integers(min_value=0, max_value=320))
@settings(max_examples=300, deadline=None)
def test_read_name_never_loops_or_reads_past_the_message(data, pos):
    try:
        name = dnswire.read_name(data, pos)
    except ValueError:
        return
    assert len(name) <= 255


def test_read_name_follows_compression_like_dnspython():
    query = dns.message.make_query("a.cname.test", "A")
    response = dns.message.make_response(query)
    response.answer.append(
        dns.rrset.from_text("a.cname.test.", 60, "IN", "CNAME", "Deep.Mid.CNAME.test.")
    )
    response.answer.append(dns.rrset.from_text("deep.mid.cname.test.", 60, "IN", "A", "1.2.3.4"))
    wire = response.to_wire()
    _, records = dnswire.walk_records(wire)
    assert dnswire.alias_targets(wire, records) == ("deep.mid.cname.test",)
    loop = b"\x00" * 12 + b"\xc0\x0c"
    with pytest.raises(ValueError):
        dnswire.read_name(loop, 12)


def _raw_exchange(port: int, payload: bytes, expect_answer: bool) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3 if not expect_answer else TIMEOUT)
        sock.sendto(payload, ("127.0.0.1", port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def _header(qdcount: int = 1, flags: int = 0x0100, arcount: int = 0) -> bytes:
    return (
        b"\x12\x34"
        + flags.to_bytes(2, "big")
        + qdcount.to_bytes(2, "big")
        + bytes(4)
        + (arcount.to_bytes(2, "big"))
    )


MALFORMED = {
    "random": bytes(random.Random(7).randrange(256) for _ in range(40)),
    "short header": b"\x12\x34\x01",
    "header only": _header(),
    "compression loop": _header() + b"\xc0\x0c\x00\x01\x00\x01",
    "pointer past end": _header() + b"\x03abc\xc0\xff\x00\x01\x00\x01",
    "label past end": _header() + b"\x3fabc",
    "name too long": _header() + b"\x01a" * 128 + b"\x00\x00\x01\x00\x01",
    "response as query": _header(flags=0x8180) + b"\x01a\x04test\x00\x00\x01\x00\x01",
    "zero questions": _header(qdcount=0),
    "two questions": _header(qdcount=2) + b"\x01a\x00\x00\x01\x00\x01" * 2,
    "trailing garbage": _header() + b"\x01a\x04test\x00\x00\x01\x00\x01junk",
    "bad opt": _header(arcount=1) + b"\x01a\x04test\x00\x00\x01\x00\x01\x00\x00\x01",
}


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_packets_are_dropped_and_counted(start_shim, payload):
    server = start_shim(blocking_matcher())
    assert _raw_exchange(server.port, payload, expect_answer=False) is None
    assert server.frontend.counters["malformed"] == 1
    assert ask(server, "blocked.test").rcode() == dns.rcode.NXDOMAIN


def test_other_opcodes_get_notimp(start_shim):
    server = start_shim(Matcher())
    notify = _header(flags=0x2000) + b"\x01a\x04test\x00\x00\x06\x00\x01"
    answer = _raw_exchange(server.port, notify, expect_answer=True)
    assert answer is not None
    assert dns.message.from_wire(answer).rcode() == dns.rcode.NOTIMP


def test_malformed_over_tcp_keeps_the_connection_usable(start_shim):
    server = start_shim(blocking_matcher())
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        bad = MALFORMED["compression loop"]
        sock.sendall(len(bad).to_bytes(2, "big") + bad)
        good = dns.message.make_query("blocked.test", "A")
        good_wire = good.to_wire()
        sock.sendall(len(good_wire).to_bytes(2, "big") + good_wire)
        response, _ = dns.query.receive_tcp(sock, time.time() + TIMEOUT)
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert server.frontend.counters["malformed"] == 1


def test_answer_matches_dnspython_on_well_formed_queries():
    frontend = DnsFrontEnd(blocking_matcher())
    for name in ["blocked.test", "a.blocked.test", "Mixed.Blocked.Test."]:
        for kw in ({}, {"use_edns": 0}, {"use_edns": 0, "want_dnssec": True}):
            query = dns.message.make_query(name, "AAAA", **kw)  # type: ignore[arg-type]
            wire = frontend.answer(query.to_wire(), ("127.0.0.1", 5353), False)
            assert isinstance(wire, bytes)
            response = dns.message.from_wire(wire)
            assert query.is_response(response) or response.id == query.id
            assert response.question == query.question


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_parser_never_raises_on_random_bytes(data):
    dnswire.parse_query(data)
    frontend = DnsFrontEnd(blocking_matcher())
    frontend.answer(b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + data, None, False)
    frontend.answer(data, None, False)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.from_regex(r"[a-zA-Z0-9-]{1,20}", fullmatch=True), min_size=1, max_size=5),
    st.sampled_from(["A", "AAAA", "TXT", "HTTPS"]),
    st.booleans(),
)
def test_parser_agrees_with_dnspython(labels, rdtype, edns):
    name = ".".join(labels)
    query = dns.message.make_query(name, rdtype, use_edns=0 if edns else None)
    parsed = dnswire.parse_query(query.to_wire())
    assert parsed is not None
    assert parsed.name == name.lower()
    assert parsed.qtype == dns.rdatatype.from_text(rdtype)
    assert parsed.qclass == 1
    assert bool(parsed.edns) == edns


def test_names_up_to_255_bytes_are_read():
    longest = ".".join(["a" * 63] * 3 + ["b" * 61])  # 255 bytes in wire form
    parsed = dnswire.parse_query(dns.message.make_query(longest, "A").to_wire())
    assert parsed is not None and parsed.name == longest
    too_long = _header() + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01"  # 257 bytes
    assert dnswire.parse_query(too_long) is None


def test_settings_defaults():
    defaults = DnsSettings()
    assert (defaults.blocked_ttl, defaults.max_ttl, defaults.fail_closed) == (10, 60, False)
    assert defaults.sinkhole is None


def _upstream_answer(ttl: int, edns: bool) -> tuple[dns.message.Message, bytes]:
    query = dns.message.make_query("Aged.Example.Test", "A", use_edns=0 if edns else None)
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    response.answer.append(dns.rrset.from_text("aged.example.test.", ttl, "IN", "A", "192.0.2.7"))
    return query, response.to_wire()


@pytest.mark.parametrize("upstream_edns", [True, False])
def test_cached_answer_ages_its_ttls_and_fits_the_clients_edns(upstream_edns):
    _, wire = _upstream_answer(100, upstream_edns)
    entry = CachedAnswer(wire, now=1000.0, max_ttl=60)
    assert entry.cacheable and entry.expires == 1100.0
    for client_edns in (True, False):
        query = dns.message.make_query(
            "aged.EXAMPLE.test", "A", use_edns=0 if client_edns else None
        )
        data = query.to_wire()
        qend = len(data) - (11 if client_edns else 0)
        edns = dnswire.EDNS_PRESENT | 1232 if client_edns else 0
        for now, ttl in ((1000.0, 60), (1050.2, 50), (1099.5, 1)):
            response = dns.message.from_wire(entry.reply(data, qend, edns, now))
            assert response.id == query.id
            assert response.question == query.question
            assert response.question[0].name.to_text() == "aged.EXAMPLE.test."
            assert response.answer[0].ttl == ttl
            assert not response.flags & dns.flags.AA
            assert response.edns == (0 if client_edns else -1)


def test_zero_ttl_and_servfail_answers_are_not_cached():
    _, wire = _upstream_answer(0, False)
    assert not CachedAnswer(wire, now=5.0, max_ttl=60).cacheable
    query = dns.message.make_query("x.test", "A")
    failed = dns.message.make_response(query)
    failed.set_rcode(dns.rcode.SERVFAIL)
    assert not CachedAnswer(failed.to_wire(), now=5.0, max_ttl=60).cacheable


def test_a_burst_of_distinct_names_beyond_the_cap_gets_servfail_not_sockets(monkeypatch) -> None:
    """A burst of random names asks upstream at most MAX_INFLIGHT at once: the rest get
    SERVFAIL at once (counted), so the burst cannot exhaust the shim's descriptors."""
    import asyncio

    from enforcer.shim.dns import answer as answer_module

    monkeypatch.setattr(answer_module, "MAX_INFLIGHT", 3)
    frontend = DnsFrontEnd(Matcher(), DnsSettings(upstreams=(("127.0.0.1", 9),)))
    replies: list[bytes] = []

    async def burst() -> None:
        for n in range(5):
            query = dns.message.make_query(f"r{n}.example.test", "A").to_wire()
            miss = frontend.answer(query, ("127.0.0.1", 5000 + n), False)
            assert isinstance(miss, answer_module.Miss)
            frontend.forward(miss, replies.append)
        assert len(replies) == 2, "the two beyond the cap are answered at once"
        await frontend.aclose()

    asyncio.run(burst())
    assert all(dns.message.from_wire(r).rcode() == dns.rcode.SERVFAIL for r in replies)
    assert frontend.counters["upstream_busy"] == 2
