"""Syslog reception for `enforcer discovery collect`: firewalls and proxies that push their logs.

Devices send the same lines the upload formats read, wrapped in a syslog header: RFC 3164 (BSD:
``<PRI>Mmm dd hh:mm:ss HOST TAG: MSG``) or RFC 5424 (``<PRI>1 TIMESTAMP HOST APP PROCID MSGID
[SD] MSG``), over UDP (one message per datagram) or TCP (RFC 6587: octet-counted ``LEN SP MSG`` or
newline-terminated). Real senders bend both RFCs (no PRI, no hostname, no tag, ISO timestamps in
BSD headers), so `parse_syslog` never fails: what it cannot recognise stays in the payload.

The parsing (`parse_syslog`, `split_frames`) is pure; `start_collector` is the thin asyncio adapter
around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from typing import NamedTuple

import structlog

log = structlog.get_logger(__name__)

MAX_FRAME = 1 << 16
"""Longest message kept (64 KiB): longer ones are cut, so one sender cannot exhaust memory."""

DEFAULT_FACILITY, DEFAULT_SEVERITY = 1, 5
"""What RFC 3164 section 4.3.3 says a message without PRI is: user-level, notice (PRI 13)."""

_BSD_TIME = re.compile(
    r"(?:[A-Z][a-z]{2} +\d{1,2}(?: \d{4})? \d\d:\d\d:\d\d(?:\.\d+)?|\d{4}-\d\d-\d\dT\S+) "
)
# A TAG ends in ": " (or ":" at the end): an ISO time ("2025-11-20T08:00:00") is not a tag.
_TAG = re.compile(r"([\w\-./@]{1,48})(?:\[[^\]\s]*\])?(?:: |:$)")


class SyslogMessage(NamedTuple):
    """One syslog message; `payload` is the log line for a format parser."""

    facility: int
    severity: int
    timestamp: str
    """As sent (RFC 3164 has no year nor zone, so it is not converted); "" when absent."""
    hostname: str
    app: str
    """RFC 5424 APP-NAME, or the RFC 3164 TAG without its ``[pid]``."""
    payload: str


def _nil(token: str) -> str:
    return "" if token == "-" else token


def _skip_structured_data(rest: str) -> str:
    """`rest` after RFC 5424 STRUCTURED-DATA (``-`` or ``[id k="v"]...``, ``\\]`` escapes inside)."""
    if rest.startswith("-"):
        return rest[1:]
    i, quoted = 0, False
    while i < len(rest):
        c = rest[i]
        if c == "\\" and quoted:
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == "]" and not quoted and not rest.startswith("[", i + 1):
            return rest[i + 1 :]
        i += 1
    return ""


def parse_syslog(message: bytes | str) -> SyslogMessage:
    """The header fields and payload of an RFC 3164 or RFC 5424 message, tolerantly."""
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    text = text.rstrip("\r\n\x00")
    facility, severity = DEFAULT_FACILITY, DEFAULT_SEVERITY
    if text.startswith("<"):
        end = text.find(">", 1, 5)
        if end > 1 and text[1:end].isascii() and text[1:end].isdigit() and int(text[1:end]) < 192:
            pri = int(text[1:end])
            facility, severity = pri >> 3, pri & 7
            text = text[end + 1 :]
    if text.startswith("1 "):  # RFC 5424 VERSION
        parts = text.split(" ", 6)
        if len(parts) == 7:
            _, timestamp, hostname, app, _procid, _msgid, rest = parts
            payload = _skip_structured_data(rest)
            payload = payload[1:] if payload.startswith(" ") else payload
            payload = payload.removeprefix("\ufeff")
            return SyslogMessage(
                facility, severity, _nil(timestamp), _nil(hostname), _nil(app), payload
            )
    timestamp = hostname = app = ""
    stamp = _BSD_TIME.match(text)
    if stamp:
        timestamp = stamp.group()[:-1]
        text = text[stamp.end() :]
        host, sep, rest = text.partition(" ")
        if sep and not _TAG.fullmatch(host + " ") and host:
            hostname, text = host, rest
    tag = _TAG.match(text)
    if tag:
        app, text = tag.group(1), text[tag.end() :]
    return SyslogMessage(facility, severity, timestamp, hostname, app, text)


def split_frames(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete TCP syslog frames in `data`, and the incomplete rest to prepend to the next read.

    Each frame is octet-counted (``LEN SP MSG``, RFC 6587 3.4.1) when it starts with digits and a
    space, else newline-terminated (3.4.2; a trailing CR or NUL is dropped). A length above
    `MAX_FRAME` is not believed (the frame is read as newline-terminated), and a newline-terminated
    frame longer than `MAX_FRAME` is cut there, so the rest never grows beyond `MAX_FRAME`.
    """
    frames: list[bytes] = []
    pos, size = 0, len(data)
    while pos < size:
        space = data.find(b" ", pos, pos + 7)
        if space > pos and data[pos:space].isdigit() and int(data[pos:space]) <= MAX_FRAME:
            end = space + 1 + int(data[pos:space])
            if end > size:
                break
            frames.append(data[space + 1 : end].rstrip(b"\r\n\x00"))
            pos = end
            continue
        newline = data.find(b"\n", pos)
        if newline < 0:
            if size - pos >= MAX_FRAME:
                frames.append(data[pos : pos + MAX_FRAME])
                pos += MAX_FRAME
                continue
            break
        frame = data[pos:newline].rstrip(b"\r\x00")
        if frame:
            frames.append(frame)
        pos = newline + 1
    return frames, data[pos:]


OnLine = Callable[[str, str], None]
"""Called with (sender IP, payload) for each message received."""


def _deliver(on_line: OnLine, sender: str, frame: bytes) -> None:
    payload = parse_syslog(frame).payload
    if not payload.strip():
        return
    try:
        on_line(sender, payload)
    except Exception:  # one bad line or consumer bug must not stop collection
        log.exception("syslog.on_line_failed", sender=sender)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, on_line: OnLine) -> None:
        self.on_line = on_line

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        # One message per datagram (RFC 5426), but some devices batch lines into one: every
        # format here is one record per line, so each line is a message of its own.
        for frame in data[:MAX_FRAME].rstrip(b"\r\n\x00").split(b"\n"):
            _deliver(self.on_line, str(addr[0]), frame)


class Collector:
    """A running collector: the ports it listens on, and `close`."""

    def __init__(self, on_line: OnLine) -> None:
        self.on_line = on_line
        self.udp_port = 0
        self.tcp_port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        sender = str(writer.get_extra_info("peername", ("?",))[0])
        pending = b""
        try:
            while data := await reader.read(MAX_FRAME):
                frames, pending = split_frames(pending + data)
                for frame in frames:
                    _deliver(self.on_line, sender, frame)
            if pending.strip():
                _deliver(self.on_line, sender, pending)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            if task is not None:
                self._clients.discard(task)

    def close(self) -> None:
        """Stop listening and drop open TCP connections."""
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._clients):
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until `close` has taken effect."""
        if self._tcp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 5)
        await asyncio.sleep(0)


async def start_collector(
    host: str, port: int, on_line: OnLine, *, udp: bool = True, tcp: bool = True
) -> Collector:
    """Listen for syslog on `host`:`port` (UDP and/or TCP); port 0 picks free ports (see the handle)."""
    collector = Collector(on_line)
    loop = asyncio.get_running_loop()
    if udp:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(on_line), local_addr=(host, port)
        )
        collector._udp = transport
        collector.udp_port = transport.get_extra_info("sockname")[1]
    if tcp:
        server = await asyncio.start_server(collector._client, host, port, limit=MAX_FRAME)
        collector._tcp = server
        collector.tcp_port = server.sockets[0].getsockname()[1]
    log.info(
        "syslog.listening", host=host, udp_port=collector.udp_port, tcp_port=collector.tcp_port
    )
    return collector
