"""``--intercept --parent-proxy``: diverted connections that are allowed leave through the parent.

The parent (``parent.py``) listens on 10.99.0.31:3128 in the namespace and records the first
line of each request it gets; clients configured with nothing (no proxy) reach the web server
at 10.99.0.80 through the shim's transparent listener and, from there, through the parent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Netns, Shim

PARENT = Path(__file__).with_name("parent.py")
PARENT_IP = "10.99.0.31"


@pytest.fixture
def parent_log(origin: Netns) -> Path:
    subprocess.run(
        ["ip", "-n", origin.name, "addr", "add", f"{PARENT_IP}/32", "dev", "lo"], check=True
    )
    log = origin.shared / "parent.jsonl"
    proc = subprocess.Popen(
        origin.argv(sys.executable, str(PARENT), PARENT_IP, "3128", str(log)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    origin.procs.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == b"ready", line + proc.stdout.read()
    return log


def received(log: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_allowed_diverted_traffic_goes_through_the_parent(
    start_shim: Callable[..., Shim], parent_log: Path
) -> None:
    shim = start_shim("--parent-proxy", f"http://u:p@{PARENT_IP}:3128")
    space = shim.netns
    code, status, body = space.curl("https://allowed.example/tls", body=b"via the parent")
    assert (code, status, body) == (0, "200", b"via the parent")
    code, status, body = space.curl("http://allowed.example/plain", body=b"plain too")
    assert (code, status, body) == (0, "200", b"plain too")
    assert [hit["line"] for hit in received(parent_log)] == [
        "CONNECT allowed.example:443 HTTP/1.1",
        "POST http://allowed.example/plain HTTP/1.1",
    ]
    assert {hit["auth"] for hit in received(parent_log)} == {"Basic dTpw"}
    # Denied traffic never reaches the parent.
    assert space.curl("http://blocked.example/")[1] == "403"
    assert space.curl("https://blocked.example/")[0] != 0
    assert len(received(parent_log)) == 2
    assert "u:p" not in shim.log() and "dTpw" not in shim.log()


def test_a_parent_refusing_a_diverted_request_is_shown(
    start_shim: Callable[..., Shim], parent_log: Path
) -> None:
    shim = start_shim("--parent-proxy", f"http://{PARENT_IP}:3128")  # no credentials: 407
    space = shim.netns
    code, status, body = space.curl("http://allowed.example/")
    assert status == "502" and b"asks for credentials (407)" in body
    code, status, _ = space.curl("https://allowed.example/")
    assert code != 0  # a TLS connection cannot carry the reason: closed
    shim.wait_for(lambda: "refused CONNECT allowed.example:443" in shim.log())
    assert [hit["line"].split(" ")[0] for hit in received(parent_log)] == ["GET", "CONNECT"]
