"""Syslog: RFC 3164 and RFC 5424 headers, TCP framing, and a collector on real local sockets."""

from __future__ import annotations

import asyncio
import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from enforcer.discovery.syslog import SyslogMessage, parse_syslog, split_frames, start_collector

PAN = "1,2024/01/02 03:04:05,0123,TRAFFIC,end,2561,2024/01/02 03:04:05,10.0.0.1,1.2.3.4"


def test_rfc3164():
    msg = parse_syslog(
        b"<134>Jan  2 03:04:05 proxy1 squid[123]: 1700000000.1 5 10.0.0.1 TCP_MISS/200"
    )
    assert msg == SyslogMessage(
        16, 6, "Jan  2 03:04:05", "proxy1", "squid", "1700000000.1 5 10.0.0.1 TCP_MISS/200"
    )


def test_rfc3164_without_tag_as_pan_os_sends_it():
    msg = parse_syslog(f"<14>Jan 2 03:04:05 PA-440 {PAN}\n")
    assert (msg.facility, msg.severity, msg.hostname, msg.app, msg.payload) == (
        1,
        6,
        "PA-440",
        "",
        PAN,
    )


def test_rfc3164_without_hostname():
    msg = parse_syslog("<13>Jan  2 03:04:05 zscaler: time=Mon Jun 20 15:29:11 2022\tcip=10.0.0.1")
    assert (msg.hostname, msg.app, msg.payload) == (
        "",
        "zscaler",
        "time=Mon Jun 20 15:29:11 2022\tcip=10.0.0.1",
    )


def test_rfc5424_with_structured_data_and_bom():
    raw = (
        '<165>1 2024-01-02T03:04:05.000Z fw01 panos - TRAFFIC [meta x="a]b" y="c\\"d"][other z="1"] \ufeff'
        + PAN
    )
    msg = parse_syslog(raw.encode())
    assert msg == SyslogMessage(20, 5, "2024-01-02T03:04:05.000Z", "fw01", "panos", PAN)


def test_rfc5424_nil_values():
    msg = parse_syslog("<14>1 - - - - - - hello")
    assert msg == SyslogMessage(1, 6, "", "", "", "hello")


def test_no_header_at_all_is_all_payload():
    assert parse_syslog("just a line\n") == SyslogMessage(1, 5, "", "", "", "just a line")


def test_split_frames_octet_counting_and_newlines():
    m1, m2 = b"<13>1 - h a - - - one", "<13>Jan  2 03:04:05 h t: tw\u00f6".encode()
    data = b"%d %s%d %s" % (len(m1), m1, len(m2), m2) + b"<13>three\r\n<13>fo"
    frames, rest = split_frames(data)
    assert frames == [m1, m2, b"<13>three"]
    assert rest == b"<13>fo"
    frames, rest = split_frames(b"%d %s" % (len(m1), m1[:5]))
    assert (frames, rest) == ([], b"%d %s" % (len(m1), m1[:5]))


def test_split_frames_caps_a_line_without_end():
    frames, rest = split_frames(b"x" * 70_000)
    assert [len(f) for f in frames] == [65536] and len(rest) == 70_000 - 65536


def test_collector_receives_udp_and_tcp():
    async def scenario() -> list[tuple[str, str]]:
        got: list[tuple[str, str]] = []
        collector = await start_collector("127.0.0.1", 0, lambda ip, line: got.append((ip, line)))
        try:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.sendto(
                f"<14>Jan 2 03:04:05 PA-440 {PAN}".encode(), ("127.0.0.1", collector.udp_port)
            )
            batch = b"<13>Jan 2 03:04:05 h a: one\n<13>Jan 2 03:04:05 h a: two\n"
            udp.sendto(batch, ("127.0.0.1", collector.udp_port))
            udp.close()
            _, writer = await asyncio.open_connection("127.0.0.1", collector.tcp_port)
            framed = b"<13>1 2024-01-02T03:04:05Z fw - - - - octet counted"
            writer.write(b"%d %s" % (len(framed), framed))
            writer.write(b"<13>Jan  2 03:04:05 fw app: newline ")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"framed\n")  # a message split across two TCP segments
            await writer.drain()
            writer.close()
            for _ in range(200):
                if len(got) == 5:
                    break
                await asyncio.sleep(0.01)
        finally:
            collector.close()
            await collector.wait_closed()
        return got

    got = asyncio.run(scenario())
    assert sorted(got) == sorted(
        [
            ("127.0.0.1", PAN),
            ("127.0.0.1", "one"),
            ("127.0.0.1", "two"),
            ("127.0.0.1", "octet counted"),
            ("127.0.0.1", "newline framed"),
        ]
    )


def test_collector_survives_a_failing_consumer():
    async def scenario() -> int:
        calls: list[str] = []

        def on_line(ip: str, line: str) -> None:
            calls.append(line)
            raise RuntimeError("consumer bug")

        collector = await start_collector("127.0.0.1", 0, on_line, udp=False)
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", collector.tcp_port)
            writer.write(b"<13>a\n<13>b\n")
            await writer.drain()
            for _ in range(200):
                if len(calls) == 2:
                    break
                await asyncio.sleep(0.01)
            writer.close()
        finally:
            collector.close()
            await collector.wait_closed()
        return len(calls)

    assert asyncio.run(scenario()) == 2


def test_a_payload_starting_with_an_iso_time_is_not_a_tag():
    line = "2025-11-20T08:00:00.000Z,10.1.2.3,alice,a.test"
    assert parse_syslog(f"<14>Nov 20 08:00:00 fw {line}").payload == line


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_parse_syslog_never_fails(message):
    assert isinstance(parse_syslog(message).payload, str)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=80).filter(lambda b: b"\n" not in b), max_size=6),
    st.integers(1, 50),
)
def test_octet_counted_frames_survive_any_tcp_segmentation(messages, step):
    stream = b"".join(b"%d %s" % (len(m), m) for m in messages)
    frames, pending = [], b""
    for i in range(0, len(stream), step):
        got, pending = split_frames(pending + stream[i : i + step])
        frames.extend(got)
    assert pending == b""
    assert frames == [m.rstrip(b"\r\n\x00") for m in messages]
