"""``enforcer shim --intercept`` against clients configured with nothing, in a network namespace.

The clients (dig, curl, Python sockets) run as ``nobody`` and talk straight to the "internet"
addresses: no proxy, their own choice of resolver, addresses pinned with ``--resolve``. The
shim's nftables table must bring every one of them to the shim anyway.
"""

from __future__ import annotations

import html
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import pytest

from .conftest import RESOLVER, WEB4, Netns, Shim

QUIC_AND_DOT = f"""
import socket
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for port in (443, 853):
    try:
        udp.sendto(b"\\xc0 quic initial", ("{WEB4}", port))
    except OSError:
        pass
try:
    socket.create_connection(("{WEB4}", 853), timeout=3).close()
    print("dot connected")
except OSError as exc:
    print("dot refused", exc)
"""


@pytest.fixture
def shim(start_shim: Callable[..., Shim]) -> Shim:
    return start_shim()


def test_dns_asked_of_any_resolver_is_answered_by_the_shim(shim: Shim) -> None:
    space = shim.netns
    assert space.dig("blocked.example") == ("NXDOMAIN", [])
    assert space.dig("blocked.example", "+tcp") == ("NXDOMAIN", [])
    assert space.dig("sub.blocked.example", server="8.8.8.8") == ("NXDOMAIN", [])
    assert space.dig("allowed.example") == ("NOERROR", [WEB4])
    assert space.dig("allowed2.example", "+tcp") == ("NOERROR", [WEB4])
    asked = {hit["name"] for hit in space.hits("dns")}
    # Allowed names were forwarded by the shim (its own, marked, queries), blocked ones never.
    assert {"allowed.example", "allowed2.example"} <= asked
    assert not any("blocked" in str(name) for name in asked)


def test_blocked_names_are_denied_on_every_web_path(shim: Shim) -> None:
    space = shim.netns
    code, status, body = space.curl("http://blocked.example/")
    assert (code, status) == (0, "403") and b"blocked" in body.lower()
    code, status, _ = space.curl("https://blocked.example/")
    assert code != 0 and status == "000"  # TLS refused with an access_denied alert
    code, status, _ = space.curl("https://blocked.example/", "-6")
    assert code != 0 and status == "000"
    # Through an HTTP proxy elsewhere (here the origin's port 80 stands for one): the request
    # line's target decides, whatever the Host header says.
    for url in ("https://blocked.example/", "http://blocked.example/"):
        via_proxy = space.run(
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{http_connect}",
            "--max-time", "5", "-x", f"http://{WEB4}:80", "-H", "Host: allowed.example",
            "--proxy-header", "Host: allowed.example", url,
            nobody=True,
        )  # fmt: skip
        assert b"403" in via_proxy.stdout.split(), url
    assert not [hit for hit in space.hits("http") if "blocked" in str(hit["host"])]
    assert len(space.hits("http")) == 0


SILENT_CLIENTS = f"""
import socket, time
held = [socket.create_connection(("{WEB4}", port), timeout=5) for port in (443, 80) * 5]
print("connected", flush=True)
time.sleep(60)
"""


def test_allowed_traffic_reaches_the_origin_byte_for_byte(shim: Shim) -> None:
    space = shim.netns
    payload = os.urandom(300_000)
    # Connections that send nothing (the listener is handed a connection once its first bytes
    # are there) hold up none of the others.
    silent = subprocess.Popen(
        space.argv(sys.executable, "-c", SILENT_CLIENTS, nobody=True), stdout=subprocess.PIPE
    )
    try:
        assert silent.stdout is not None and silent.stdout.readline() == b"connected\n"
        for url, options in (
            ("https://allowed.example/upload", ()),
            ("http://allowed.example/upload", ()),
            ("https://allowed.example/v6", ("-6",)),
        ):
            code, status, body = space.curl(url, *options, body=payload)
            assert (code, status) == (0, "200"), url
            assert body == payload, url
    finally:
        silent.kill()
        silent.wait(10)
    hosts = [hit["host"] for hit in space.hits("http")]
    assert hosts.count("allowed.example") == 3


def test_quic_and_dns_over_tls_are_refused(shim: Shim) -> None:
    space = shim.netns
    script = space.shared / "quic_dot.py"
    script.write_text(QUIC_AND_DOT)
    script.chmod(0o644)
    out = space.run("/usr/bin/python3", str(script), nobody=True).stdout.decode()
    assert "dot refused" in out
    assert not space.hits("udp443") and not space.hits("udp853") and not space.hits("tcp853")


def test_events_name_the_process_and_the_user(shim: Shim) -> None:
    space = shim.netns
    space.curl("https://blocked.example/")
    space.dig("blocked.example")
    web = shim.wait_event(lambda e: e["domain"] == "blocked.example" and e["source"] == "proxy")
    assert web["action"] == "blocked"
    assert web["user"] == "nobody"
    assert web["processName"] == "curl"
    assert str(web["processPath"]).endswith("/curl")
    assert int(str(web["pid"])) > 0
    assert web["destIp"] == WEB4 and web["destPort"] == 443
    dns = shim.wait_event(lambda e: e["domain"] == "blocked.example" and e["source"] == "dns")
    assert (dns["user"], dns["processName"]) == ("nobody", "dig")


def test_dns_over_tcp_names_the_process_and_the_user(shim: Shim) -> None:
    space = shim.netns
    assert space.dig("tcp.blocked.example", "+tcp") == ("NXDOMAIN", [])  # answered at once
    assert space.dig("tcp-allowed.example", "+tcp") == ("NOERROR", [WEB4])  # forwarded first
    for name in ("tcp.blocked.example", "tcp-allowed.example"):
        event = shim.wait_event(lambda e, name=name: e["domain"] == name)  # type: ignore[misc]
        assert event["source"] == "dns"
        assert (event["user"], event["processName"]) == ("nobody", "dig"), event
        assert str(event["processPath"]).endswith("/dig") and int(str(event["pid"])) > 0


def test_a_connection_without_a_name_is_named_by_the_shims_dns_answers(shim: Shim) -> None:
    space = shim.netns
    raw = (
        "import socket; s = socket.create_connection(('{}', 80), timeout=5); "
        "s.sendall(b'\\x00\\x01 not http'); s.shutdown(socket.SHUT_WR); s.recv(100)"
    )
    # Before any DNS answer for it, the address is all the shim knows: relayed, recorded.
    space.run("/usr/bin/python3", "-c", raw.format(WEB4), nobody=True)
    event = shim.wait_event(lambda e: e["source"] == "proxy" and e["domain"] == WEB4)
    assert (event["action"], event["bytesUp"]) == ("allowed", 11)
    # Once the shim answered allowed.example with that address, the connection is named.
    assert space.dig("allowed.example") == ("NOERROR", [WEB4])
    space.run("/usr/bin/python3", "-c", raw.format(WEB4), nobody=True)
    event = shim.wait_event(
        lambda e: e["source"] == "proxy" and e["domain"] == "allowed.example" and e["bytesUp"] == 11
    )
    assert event["processName"] == "python3"


def test_a_connection_without_a_name_to_a_warned_names_address_is_warned(shim: Shim) -> None:
    space = shim.netns
    assert space.dig("warn.example") == ("NOERROR", [WEB4])  # warn is answered, and noted
    raw = (
        f"import socket; s = socket.create_connection(('{WEB4}', 443), timeout=5); "
        "s.sendall(b'\\x00\\x01 not tls'); print(s.recv(100))"
    )
    result = space.run("/usr/bin/python3", "-c", raw, nobody=True)
    assert result.stdout.strip() in (b"b''", b"")  # closed (or reset) without an answer
    event = shim.wait_event(lambda e: e["source"] == "proxy" and e["destPort"] == 443)
    assert (event["domain"], event["action"], event["user"]) == ("warn.example", "warned", "nobody")


def test_the_warning_bypass_belongs_to_the_user_who_chose_it(shim: Shim) -> None:
    space = shim.netns
    _, status, page = space.curl("http://warn.example/")
    assert status == "403"
    fields = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page.decode())
    data = urlencode([(name, html.unescape(value)) for name, value in fields])
    _, status, _ = space.curl(
        "http://warn.example/.well-known/enforcer/continue", "--data-raw", data
    )
    assert status == "303"
    assert space.curl("http://warn.example/")[1] == "200"
    # Another OS user (root here) has not chosen to continue: still warned.
    other = space.run(
        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--noproxy", "*",
        "--resolve", f"warn.example:80:{WEB4}", "http://warn.example/",
    )  # fmt: skip
    assert other.stdout == b"403"


def test_sigterm_removes_the_table_and_traffic_flows_again(shim: Shim) -> None:
    space = shim.netns
    assert space.table() is not None
    assert shim.stop() == 0
    assert space.table() is None
    assert space.dig("blocked.example") == ("NOERROR", [WEB4])
    assert space.curl("https://blocked.example/")[:2] == (0, "200")


def test_a_removed_table_is_put_back(shim: Shim) -> None:
    space = shim.netns
    assert space.run("nft", "delete", "table", "inet", "enforcer").returncode == 0
    shim.wait_for(lambda: "intercept.reinstalled" in shim.log(), within=15)
    assert space.table() is not None
    assert space.dig("blocked.example") == ("NXDOMAIN", [])
    assert space.run("nft", "flush", "table", "inet", "enforcer").returncode == 0
    shim.wait_for(lambda: shim.log().count("intercept.reinstalled") == 2, within=15)
    assert space.curl("https://blocked.example/")[0] != 0


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_after_a_kill_the_fail_mode_decides(start_shim: Callable[..., Shim], mode: str) -> None:
    shim = start_shim("--fail-mode", mode)
    space = shim.netns
    shim.stop(signal.SIGKILL)
    assert space.table() is not None  # nobody removed it
    off = space.run(sys.executable, "-m", "enforcer", "shim", "intercept", "off")
    assert off.returncode == 0, off.stderr
    if mode == "open":
        assert space.table() is None
        assert space.curl("https://blocked.example/")[:2] == (0, "200")
    else:
        assert space.table() is not None
        assert space.curl("https://allowed.example/")[0] != 0  # diverted to a closed port
        assert space.dig("allowed.example")[0] == ""
        forced = space.run(sys.executable, "-m", "enforcer", "shim", "intercept", "off", "--force")
        assert forced.returncode == 0 and space.table() is None


def test_the_table_is_only_in_the_namespace(shim: Shim) -> None:
    here = subprocess.run(
        ["nft", "list", "table", "inet", "enforcer"], capture_output=True, check=False
    )
    assert here.returncode != 0
    assert RESOLVER in shim.netns.run("ip", "addr").stdout.decode()


def test_a_host_without_nft_is_told_what_is_missing(origin: Netns, tmp_path: Path) -> None:
    result = origin.run(
        "env", "PATH=/usr/bin:/bin", sys.executable, "-m", "enforcer", "shim",
        "--server", "http://127.0.0.1:9", "--enroll-secret", "s" * 32,
        "--state-dir", str(tmp_path / "state"), "--upstream", RESOLVER, "--intercept",
    )  # fmt: skip
    assert result.returncode == 1
    assert b"needs the nft command" in result.stderr and b"nftables" in result.stderr
    assert origin.table() is None
    # The shim did not stay half-started: nothing listens on the diverted DNS port.
    assert origin.run("ss", "-lnu").stdout.count(b":970 ") == 0


def test_an_allowed_relayed_connection_names_its_process_user_and_bytes(shim: Shim) -> None:
    space = shim.netns
    payload = os.urandom(50_000)
    code, status, body = space.curl("https://allowed.example/relayed", body=payload)
    assert (code, status, body) == (0, "200", payload)
    event = shim.wait_event(
        lambda e: e["domain"] == "allowed.example" and e["source"] == "proxy"
        and e["destPort"] == 443
    )  # fmt: skip
    assert event["action"] == "allowed"
    assert (event["user"], event["processName"]) == ("nobody", "curl"), event
    assert str(event["processPath"]).endswith("/curl") and int(str(event["pid"])) > 0
    # The TLS records around the 50 kB each way: both directions counted.
    assert int(str(event["bytesUp"])) > 50_000 and int(str(event["bytesDown"])) > 50_000
