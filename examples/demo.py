"""One-command demo: policies in, blocks on the endpoint out, a policy edit live in seconds.

    .venv/bin/python examples/demo.py

Starts, on free ports of 127.0.0.1 and in a temporary directory (removed at exit):

* a tiny fake upstream DNS server (every name resolves to 192.0.2.1), so nothing outside this
  machine is ever asked;
* `enforcer daemon --serve`: reconciles the example policies (`enforcer init` in the temporary
  directory, so an edited policy directory of yours does not matter) into a SQLite store and serves
  the API devices sync from;
* `enforcer shim`: the endpoint agent (DNS sinkhole and proxy).

Then it shows with ``dig`` and ``curl -x`` that mega.nz (an unsanctioned app) is denied while
box.com (sanctioned) resolves, edits the policy copy to unsanction Dropbox, and times how long
the block takes to reach the endpoint, with no restart.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

ENFORCER = [sys.executable, "-m", "enforcer"]
ADMIN_TOKEN = "demo-admin-token-0123456789abcdef0123"
ENROLL_SECRET = "demo-enroll-secret-0123456789abcdef"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP (the DNS front end listens on both)."""
    for _ in range(100):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.bind(("127.0.0.1", 0))
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
            return int(udp.getsockname()[1])
        except OSError:
            continue
        finally:
            udp.close()
            tcp.close()
    raise OSError("no free port")


def fake_upstream(port: int, stop: threading.Event) -> None:
    """Answer every A query with 192.0.2.1 (TTL 60), over UDP."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                wire, addr = sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            question = query.question[0]
            if question.rdtype == dns.rdatatype.A:
                response.answer.append(
                    dns.rrset.from_text(question.name, 60, "IN", "A", "192.0.2.1")
                )
            sock.sendto(response.to_wire(), addr)


def dig(port: int, name: str) -> str:
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), name, "A", "+tries=1", "+time=2"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    status = out.split("status: ", 1)[1].split(",", 1)[0] if "status: " in out else "no answer"
    answers = [line.split()[-1] for line in out.splitlines() if "\tA\t" in line]
    return f"{status} {' '.join(answers)}".strip()


def curl(proxy_port: int, url: str) -> str:
    return subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
         "-x", f"http://127.0.0.1:{proxy_port}", url],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout  # fmt: skip


def wait_for(what: str, check: Callable[[], bool], within: float = 30.0) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def show(title: str, value: str) -> None:
    print(f"  {title:<48} {value}")


def main() -> None:
    for tool in ("dig", "curl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"demo: {tool} is needed")
    work = Path(tempfile.mkdtemp(prefix="enforcer-demo-"))
    procs: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    try:
        # Its own copy of the shipped examples (as `enforcer init` writes them), never the
        # policy directory the walkthrough or the console edit.
        policies = work / "policies"
        subprocess.run(
            [*ENFORCER, "init", "--no-git", str(policies)], check=True, stdout=subprocess.DEVNULL
        )
        server_port, proxy_port = free_port(), free_port()
        dns_port, upstream_port = free_udp_tcp_port(), free_port(socket.SOCK_DGRAM)
        threading.Thread(target=fake_upstream, args=(upstream_port, stop), daemon=True).start()
        server = f"http://127.0.0.1:{server_port}"
        env = {
            **os.environ,
            "ENFORCER_DATABASE_URL": f"sqlite:///{work / 'enforcer.db'}",
            "ENFORCER_POLICY_DIR": str(policies),
            "ENFORCER_ADMIN_TOKEN": ADMIN_TOKEN,
            "ENFORCER_ENROLL_SECRET": ENROLL_SECRET,
            "ENFORCER_LOG_FORMAT": "json",
        }
        print(f"work directory {work}")
        print(f"starting enforcer daemon --serve on {server} ...")
        procs.append(
            subprocess.Popen(
                [*ENFORCER, "daemon", "--serve", "--host", "127.0.0.1", "--port", str(server_port)],
                env=env,
                stdout=(work / "daemon.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
        wait_for("the server", lambda: healthy(server))
        print(
            f"starting enforcer shim (DNS 127.0.0.1:{dns_port}, proxy 127.0.0.1:{proxy_port}) ..."
        )
        shim_argv = [
            *ENFORCER, "shim", "--server", server, "--enroll-secret", ENROLL_SECRET,
            "--state-dir", str(work / "shim"),
            "--dns-listen", f"127.0.0.1:{dns_port}",
            "--proxy-listen", f"127.0.0.1:{proxy_port}",
            "--upstream", f"127.0.0.1:{upstream_port}",
        ]  # fmt: skip
        shim_log = (work / "shim.log").open("wb")
        procs.append(
            subprocess.Popen(shim_argv, env=env, stdout=shim_log, stderr=subprocess.STDOUT)
        )
        took = wait_for("the first block", lambda: dig(dns_port, "mega.nz").startswith("NXDOMAIN"))
        print(f"policies reconciled and synced to the shim ({took:.1f} s after it started)\n")
        show("dig mega.nz (unsanctioned: block)", dig(dns_port, "mega.nz"))
        show("dig www.mega.nz", dig(dns_port, "www.mega.nz"))
        show("curl -x proxy http://mega.nz/", curl(proxy_port, "http://mega.nz/"))
        show("dig box.com (sanctioned)", dig(dns_port, "box.com"))
        show("dig dropbox.com (monitored: audit)", dig(dns_port, "dropbox.com"))

        print("\nediting policies/file-sharing.yaml: dropbox becomes unsanctioned ...")
        path = policies / "file-sharing.yaml"
        text = path.read_text()
        edited = text.replace(
            "  - app: dropbox\n    tag: monitored", "  - app: dropbox\n    tag: unsanctioned"
        )
        if edited == text:
            raise SystemExit("demo: policies/file-sharing.yaml no longer has the dropbox entry")
        path.write_text(edited)
        took = wait_for(
            "the new block", lambda: dig(dns_port, "dropbox.com").startswith("NXDOMAIN"), 60
        )
        print(f"the block reached the endpoint {took:.1f} s after the edit, with no restart\n")
        show("dig dropbox.com", dig(dns_port, "dropbox.com"))
        show("curl -x proxy http://www.dropbox.com/", curl(proxy_port, "http://www.dropbox.com/"))
        show("dig box.com", dig(dns_port, "box.com"))
        print(f"\nlogs: {work / 'daemon.log'}, {work / 'shim.log'} (removed at exit)")
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        stop.set()
        if os.environ.get("ENFORCER_DEMO_KEEP"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
