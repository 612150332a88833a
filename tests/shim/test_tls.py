"""The ClientHello SNI reader, against real ClientHellos from Python's ssl module and garbage."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enforcer.shim.proxy import tls


def client_hello(server_hostname: str | None, *, tls13: bool = True) -> bytes:
    """The first flight a real TLS client sends, taken from an in-memory handshake."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = server_hostname is not None
    if not tls13:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


def refragment(hello: bytes, size: int) -> bytes:
    """The same ClientHello carried in handshake records of at most `size` bytes each."""
    message = hello[5 : 5 + int.from_bytes(hello[3:5], "big")]
    out = bytearray()
    for at in range(0, len(message), size):
        fragment = message[at : at + size]
        out += bytes([0x16, 3, 1]) + len(fragment).to_bytes(2, "big") + fragment
    return bytes(out)


HELLO = client_hello("www.example.com")


@pytest.mark.parametrize("tls13", [True, False])
def test_reads_the_server_name_of_a_real_client_hello(tls13: bool) -> None:
    assert tls.server_name(client_hello("Mail.Example.ORG", tls13=tls13)) == "mail.example.org"


def test_no_server_name_for_an_ip_address() -> None:
    assert tls.server_name(client_hello("192.0.2.1")) is None


def test_every_prefix_asks_for_more_data() -> None:
    for end in range(len(HELLO)):
        with pytest.raises(tls.NeedMoreData):
            tls.server_name(HELLO[:end])


@pytest.mark.parametrize("size", [1, 7, 100, 511])
def test_a_hello_split_across_records(size: int) -> None:
    split = refragment(HELLO, size)
    assert tls.server_name(split) == "www.example.com"
    with pytest.raises(tls.NeedMoreData):
        tls.server_name(split[:-1])


def test_bytes_after_the_hello_are_not_read() -> None:
    assert tls.server_name(HELLO + b"\x17\x03\x03\x00\x05hello") == "www.example.com"


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x16\x02\x00\x00\x05hello",  # not TLS version 3
        b"\x16\x03\x01\x00\x00",  # empty record
        b"\x16\x03\x01\x40\x01" + b"\x00" * 5,  # record longer than 2^14
        b"\x16\x03\x01\x00\x04\x02\x00\x00\x00",  # ServerHello, not ClientHello
        b"\x16\x03\x01\x00\x04\x01\xff\xff\xff",  # ClientHello larger than the maximum
        b"\x16\x03\x01\x00\x04\x01\x00\x00\x00",  # empty ClientHello body
    ],
)
def test_malformed_input_is_a_parse_error(data: bytes) -> None:
    with pytest.raises(tls.ParseError) as info:
        tls.server_name(data)
    assert type(info.value) is tls.ParseError


def test_a_length_that_overruns_its_container_is_rejected() -> None:
    # Grow the extensions length by one inside an otherwise intact hello.
    body = bytearray(HELLO)
    at = 5 + 4 + 2 + 32
    at += 1 + body[at]  # session id
    at += 2 + int.from_bytes(body[at : at + 2], "big")  # cipher suites
    at += 1 + body[at]  # compression methods
    length = int.from_bytes(body[at : at + 2], "big")
    body[at : at + 2] = (length + 1).to_bytes(2, "big")
    with pytest.raises(tls.ParseError):
        tls.server_name(bytes(body))


def test_a_server_name_with_illegal_characters_is_rejected() -> None:
    at = HELLO.find(b"www.example.com")
    bad = HELLO[:at] + b"www.exa/ple.com" + HELLO[at + 15 :]
    with pytest.raises(tls.ParseError):
        tls.server_name(bad)


def test_looks_like_tls() -> None:
    assert tls.looks_like_tls(HELLO)
    assert not tls.looks_like_tls(b"")
    assert not tls.looks_like_tls(b"SSH-2.0-OpenSSH\r\n")


def _server_name_or_error(data: bytes) -> None:
    try:
        result = tls.server_name(data)
    except tls.ParseError:
        return
    assert result is None or isinstance(result, str)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    _server_name_or_error(data)
    _server_name_or_error(b"\x16\x03\x01" + data)


@settings(max_examples=500, deadline=None)
@given(st.integers(0, len(HELLO) - 1), st.integers(0, 255), st.integers(1, len(HELLO)))
def test_mutated_real_hellos_never_raise_anything_else(at: int, value: int, end: int) -> None:
    mutated = bytearray(HELLO)
    mutated[at] = value
    _server_name_or_error(bytes(mutated[:end]))
