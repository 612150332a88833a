"""Kept-alive plain HTTP through the transparent listener: every request decided on its own.

Allowed and blocked names share the web server's address here, as sites behind one CDN
address do: a client that opened a connection for an allowed name must not reach a blocked
one by naming it in its next request on that connection.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .conftest import WEB4, Shim

TWO_REQUESTS = f"""
import socket, sys
s = socket.create_connection(("{WEB4}", 80), timeout=5)
stream = s.makefile("rb")

def response():
    head = b""
    while not head.endswith(b"\\r\\n\\r\\n"):
        line = stream.readline()
        if not line:
            return None
        head += line
    length = [int(l.split(b":")[1]) for l in head.split(b"\\r\\n") if l.lower().startswith(b"content-length:")]
    return head.split(b" ")[1].decode() + " " + stream.read(length[0]).decode("latin-1")[:40].replace("\\n", " ")

def get(host, path):
    return f"GET {{path}} HTTP/1.1\\r\\nHost: {{host}}\\r\\n\\r\\n".encode()

first, second = get("allowed.example", "/one"), get(sys.argv[1], "/two")
if sys.argv[2] == "pipelined":
    s.sendall(first + second)
    print(response()); print(response())
else:
    s.sendall(first); print(response())
    s.sendall(second); print(response())
s.settimeout(1)
try:
    print("closed" if stream.read(1) == b"" else "more")
except TimeoutError:
    print("open")
"""


@pytest.fixture
def shim(start_shim: Callable[..., Shim]) -> Shim:
    return start_shim()


def two_requests(shim: Shim, second_host: str, mode: str) -> list[str]:
    space = shim.netns
    script = space.shared / "two_requests.py"
    script.write_text(TWO_REQUESTS)
    script.chmod(0o644)
    result = space.run("/usr/bin/python3", str(script), second_host, mode, nobody=True)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().splitlines()


@pytest.mark.parametrize("mode", ["sequential", "pipelined"])
def test_a_blocked_second_request_on_one_connection_is_blocked(shim: Shim, mode: str) -> None:
    lines = two_requests(shim, "blocked.example", mode)
    assert lines[0] == "200 "  # the origin echoes the (empty) body
    assert lines[1].startswith("403 ") and "<!doctype html>" in lines[1].lower()
    assert lines[2] == "closed"
    hosts = [hit["host"] for hit in shim.netns.hits("http")]
    assert hosts == ["allowed.example"]
    blocked = shim.wait_event(lambda e: e["domain"] == "blocked.example")
    assert (blocked["action"], blocked["processName"]) == ("blocked", "python3")
    allowed = shim.wait_event(lambda e: e["domain"] == "allowed.example")
    assert allowed["action"] == "allowed" and int(str(allowed["bytesDown"])) > 0


def test_allowed_requests_on_one_connection_are_all_relayed(shim: Shim) -> None:
    lines = two_requests(shim, "allowed2.example", "sequential")
    assert lines == ["200 ", "200 ", "open"]
    hosts = [hit["host"] for hit in shim.netns.hits("http")]
    assert hosts == ["allowed.example", "allowed2.example"]
    shim.wait_event(lambda e: e["domain"] == "allowed2.example" and e["action"] == "allowed")


def test_curl_with_two_urls_on_one_connection(shim: Shim) -> None:
    space = shim.netns
    # --next keeps curl's connection cache: the second transfer reuses the first's connection
    # (num_connects 0) with a Host header naming a blocked app.
    result = space.run(
        "curl", "-s", "--noproxy", "*", "--max-time", "5",
        "--resolve", f"allowed.example:80:{WEB4}",
        "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n", "http://allowed.example/a",
        "--next", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n",
        "-H", "Host: blocked.example", "http://allowed.example/b",
        nobody=True,
    )  # fmt: skip
    assert result.stdout.decode().split("\n")[:2] == ["200 1", "403 0"], result.stdout
    assert [hit["host"] for hit in space.hits("http")] == ["allowed.example"]
