"""The parts of interception that need no namespace: the ruleset text, the fail mode a listed
table records, the process finder on this process's own sockets, and the address map."""

from __future__ import annotations

import getpass
import os
import socket
import sys
from pathlib import Path

import pytest

from enforcer.shim.intercept import nft
from enforcer.shim.intercept.transparent import AddressNames
from enforcer.shim.report.process import ProcessFinder, _SockDiag

RULESET = nft.Ruleset(dns_port_v4=970, dns_port_v6=970, tcp_port_v4=971, tcp_port_v6=971)


def test_the_table_diverts_dns_and_web_and_refuses_quic_and_dot() -> None:
    text = RULESET.render()
    # Replaces a table left by a killed shim in the same transaction.
    assert text.startswith("table inet enforcer\ndelete table inet enforcer\n")
    for rule in (
        "meta mark 0x2a return",
        "meta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 redirect to :970",
        "meta nfproto ipv6 tcp dport { 80, 443 } redirect to :971",
        "udp dport 443 reject",
        "tcp dport 853 reject with tcp reset",
        "udp dport 853 reject",
    ):
        assert rule in text
    # The exemption comes first in both chains.
    for chain in text.split("chain ")[1:]:
        assert chain.splitlines()[2].strip() == "meta mark 0x2a return"
    assert "fail-mode=open" in text


def test_settings_allow_quic_and_dot_and_choose_ports() -> None:
    ruleset = nft.Ruleset(
        970, 970, 971, 971, ports=(8080,), allow_quic=True, allow_dot=True, fail_mode="closed"
    )
    text = ruleset.render()
    assert "dport 443" not in text and "853" not in text
    assert "tcp dport { 8080 } redirect" in text
    assert nft.fail_mode(text) == "closed"


def test_without_an_ipv6_listener_ipv6_is_refused_not_let_through() -> None:
    text = nft.Ruleset(970, 0, 971, 0).render()
    assert "meta nfproto ipv6 meta l4proto { tcp, udp } th dport 53 reject" in text
    assert "meta nfproto ipv6 tcp dport { 80, 443 } reject with tcp reset" in text


def test_a_table_that_does_not_say_its_mode_is_fail_open() -> None:
    assert nft.fail_mode("table inet enforcer {\n}") == "open"
    assert nft.fail_mode('comment "enforcer-shim fail-mode=closed pid=7"') == "closed"


def test_a_missing_nft_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(nft.NftError, match=r"nft command .*nftables"):
        nft.install(RULESET)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM])
def test_the_finder_names_the_process_and_user_of_a_socket(
    family: socket.AddressFamily, kind: socket.SocketKind
) -> None:
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    with socket.socket(family, kind) as sock:
        try:
            sock.bind((host, 0))
        except OSError:
            pytest.skip(f"no {host} here")
        if kind == socket.SOCK_STREAM:
            sock.listen()  # a TCP socket is listed once it listens or connects
        port = sock.getsockname()[1]
        found = ProcessFinder().lookup("tcp" if kind == socket.SOCK_STREAM else "udp", host, port)
    assert found is not None
    assert found.pid == os.getpid()
    assert found.uid == os.getuid() and found.user == getpass.getuser()
    assert found.path == os.readlink("/proc/self/exe")
    assert found.name == Path("/proc/self/comm").read_text().strip()


@pytest.mark.skipif(sys.platform != "linux", reason="netlink sock_diag")
def test_a_burst_of_connections_is_looked_up_in_one_netlink_request() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        address = server.getsockname()
        clients = [socket.create_connection(address) for _ in range(40)]
        try:
            ends = [(*c.getsockname(), *address) for c in clients]
            gone = ("127.0.0.1", 9, *address)  # no such connection
            found = ProcessFinder().lookup_many(
                [("tcp", src, sport, (dst, dport)) for src, sport, dst, dport in [*ends, gone]]
            )
            assert found[-1] is None or found[-1].pid == 0
            assert [info.pid if info else None for info in found[:-1]] == [os.getpid()] * 40
            diag = _SockDiag()
            ids = diag.tcp_many([*ends[:3], gone, *ends[3:]])
            inodes = [os.fstat(c.fileno()).st_ino for c in clients]
            assert ids[3] is None
            assert [i[0] if i else None for i in ids[:3] + ids[4:]] == inodes
            assert {i[1] for i in ids if i} == {os.getuid()}
        finally:
            for client in clients:
                client.close()


def test_the_finder_finds_nothing_for_a_free_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert ProcessFinder().lookup("tcp", "127.0.0.1", port) is None


def test_the_address_map_keeps_the_last_answer_and_is_bounded() -> None:
    names = AddressNames(size=2)
    names.learn("a.example", "192.0.2.1")
    names.learn("b.example", "192.0.2.1")
    names.learn("c.example", "192.0.2.2")
    assert names.get("192.0.2.1") == "b.example"
    names.learn("d.example", "192.0.2.3")
    assert names.get("192.0.2.1") is None  # the oldest went
    assert names.get("192.0.2.3") == "d.example"
