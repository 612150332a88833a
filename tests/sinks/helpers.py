"""Shared by the sink tests: free ports, DNS queries with dnspython, sample indicators."""

from __future__ import annotations

import socket
import threading
import time

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset

from enforcer.config import Settings
from enforcer.models import Action, Indicator, Severity


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (bound, then released)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


def resolve(port: int, name: str) -> tuple[str, list[str]]:
    """(rcode text, A addresses) of one query to 127.0.0.1:port."""
    answer = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=2)
    addresses = [
        item.address for rrset in answer.answer if rrset.rdtype == dns.rdatatype.A for item in rrset
    ]
    return dns.rcode.to_text(answer.rcode()), addresses


def wait_answering(port: int, name: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=0.2)
            return
        except (dns.exception.Timeout, OSError):
            time.sleep(0.05)
    raise TimeoutError(f"nothing answers on 127.0.0.1:{port}")


def ind(value: str, action: Action = Action.BLOCK, **fields: object) -> Indicator:
    """A device-wide policy-like indicator."""
    fields.setdefault("app_id", value.split(".")[0])
    fields.setdefault("description", "Managed by Enforcer")
    return Indicator(value=value, action=action, severity=Severity.HIGH, **fields)  # type: ignore[arg-type]


def settings(**fields: object) -> Settings:
    """Settings for a test, independent of the environment's ENFORCER_* variables."""
    return Settings.model_validate({"database_url": "sqlite://", **fields})


class FakeUpstream:
    """A tiny authoritative server on 127.0.0.1: fixed A records, NOERROR/no data otherwise.

    The upstream of the resolvers under test, so that no query ever leaves the machine.
    """

    def __init__(self, records: dict[str, str]) -> None:
        self.records = {name.rstrip(".").lower(): address for name, address in records.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            try:
                query = dns.message.from_wire(data)
            except dns.exception.DNSException:
                continue
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            if question.rdtype == dns.rdatatype.A and name in self.records:
                response.answer.append(
                    dns.rrset.from_text(question.name, 60, "IN", "A", self.records[name])
                )
            self.sock.sendto(response.to_wire(), peer)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
