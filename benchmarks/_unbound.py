"""Helpers shared by the DNS benchmarks: the domain set, Unbound with an RPZ zone, a fake upstream.

* `load_domains(count)`: real blocklist names (``../shared/data/blocklist-anudeep``, hosts format,
  MIT) plus deterministic synthetic subdomains of them up to ``count``.
* `start_unbound(...)`: Debian's Unbound on 127.0.0.1, one thread, with the domains as a
  response policy zone (``name CNAME .`` and ``*.name CNAME .``: NXDOMAIN for the name and its
  subdomains).
* `FakeUpstream`: a small authoritative server on 127.0.0.1 that answers every A query with
  192.0.2.1, TTL 3600; the upstream of both peers for the "allowed, cached" case.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rrset

BLOCKLIST_DIR = Path(
    os.environ.get(
        "ENFORCER_BLOCKLIST_DIR", Path(__file__).parents[2] / "shared/data/blocklist-anudeep"
    )
)
_PREFIXES = ("cdn", "api", "img", "ads", "static", "m", "t", "pixel", "eu", "us")


def real_domains() -> list[str]:
    """The distinct names of the hosts-format blocklists, in file order."""
    seen: dict[str, None] = {}
    for path in sorted(BLOCKLIST_DIR.glob("*.txt")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and not line.startswith("#") and parts[1] not in ("localhost",):
                seen[parts[1].lower().rstrip(".")] = None
    seen.pop("0.0.0.0", None)
    return list(seen)


def load_domains(count: int) -> list[str]:
    """``count`` distinct blocked names: the real ones, then ``<prefix><n>.<real name>``."""
    real = real_domains()
    if count <= len(real):
        return real[:count]
    out = list(real)
    n = 0
    while len(out) < count:
        base = real[n % len(real)]
        out.append(f"{_PREFIXES[n % len(_PREFIXES)]}{n // len(real)}.{base}")
        n += 1
    return out


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (bound then released)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


def write_rpz(path: Path, domains: list[str]) -> None:
    """A response policy zone answering NXDOMAIN for each name and its subdomains."""
    with path.open("w") as out:
        out.write(
            "$TTL 60\n@ SOA localhost. root.localhost. 1 3600 600 86400 60\n@ NS localhost.\n"
        )
        for name in domains:
            out.write(f"{name} CNAME .\n*.{name} CNAME .\n")


def unbound_conf(workdir: Path, port: int, rpz: Path, upstream_port: int) -> Path:
    conf = workdir / "unbound.conf"
    conf.write_text(
        f"""server:
  module-config: "respip validator iterator"
  interface: 127.0.0.1@{port}
  port: {port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{workdir}"
  pidfile: ""
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  use-syslog: no
  logfile: ""
  verbosity: 0
rpz:
  name: rpz.local.
  zonefile: {rpz}
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@{upstream_port}
"""
    )
    return conf


def wait_answering(port: int, name: str, deadline: float) -> float:
    """Poll with a query until the server answers; returns the time it first did."""
    query = dns.message.make_query(name, "A")
    while time.monotonic() < deadline:
        try:
            dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
            return time.monotonic()
        except (dns.exception.Timeout, OSError):
            time.sleep(0.05)
    raise TimeoutError(f"nothing answers on 127.0.0.1:{port}")


def start_unbound(
    workdir: Path, domains: list[str], upstream_port: int
) -> tuple[subprocess.Popen[bytes], int, float]:
    """Start Unbound with the domains as an RPZ: (process, port, seconds to its first answer)."""
    rpz = workdir / "rpz.zone"
    write_rpz(rpz, domains)
    port = free_port()
    conf = unbound_conf(workdir, port, rpz, upstream_port)
    subprocess.run(["unbound-checkconf", str(conf)], check=True, capture_output=True)
    started = time.monotonic()
    proc = subprocess.Popen(
        ["unbound", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    answered = wait_answering(port, domains[0], started + 600)
    return proc, port, answered - started


def rss_kib(pid: int) -> int:
    """Resident memory of a process (KiB)."""
    return int(
        subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True).stdout
    )


class FakeUpstream:
    """An authoritative server answering every A query with 192.0.2.1, TTL 3600 (UDP only)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            try:
                query = dns.message.from_wire(wire)
            except Exception:
                continue
            self.queries += 1
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            question = query.question[0]
            if question.rdtype == 1:
                response.answer.append(
                    dns.rrset.from_text(question.name, 3600, "IN", "A", "192.0.2.1")
                )
            self.sock.sendto(response.to_wire(), addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
