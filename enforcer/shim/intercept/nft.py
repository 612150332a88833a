"""The shim's nftables table, ``inet enforcer``: generated, installed and removed with `nft`.

One table, two chains on the ``output`` hook, so only traffic that processes of this host
originate is touched (not forwarded traffic of containers or VMs routed through it):

* ``divert`` (nat, priority -100): DNS (UDP and TCP 53) to the shim's DNS listeners, and TCP to
  the intercepted ports (80, 443) to its transparent listener, whatever address the process
  asked for. ``redirect`` rewrites the destination to the loopback address of the packet's
  family (127.0.0.1 or ::1), so each family has its own target port;
* ``refuse`` (filter): QUIC (UDP 443) and DNS over TLS/QUIC (TCP/UDP 853) rejected (ICMP
  unreachable, TCP reset), so clients fall back at once to TCP and to plain DNS, which the
  shim sees. Each can be allowed.

Both chains start with ``meta mark MARK return``: the shim's own sockets carry that mark
(`enforcer.shim.intercept.mark`), so its upstream queries and relayed connections go out
instead of looping back into it.

The table is written with ``nft -f -`` as one transaction that first deletes any table of the
same name, so a table left by a shim killed with SIGKILL is replaced atomically, never doubled.
The table's comment records the fail mode: `remove` with ``keep_fail_closed`` (what
``enforcer shim intercept off`` does after the service stops) leaves a fail-closed table in
place, so a dead shim keeps the device's web and DNS traffic failing instead of flowing freely.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from enforcer.shim.intercept.mark import MARK

FAMILY = "inet"
TABLE = "enforcer"
COMMENT_PREFIX = "enforcer-shim"
FAIL_OPEN = "open"
FAIL_CLOSED = "closed"
FAIL_MODES = (FAIL_OPEN, FAIL_CLOSED)
_TIMEOUT = 10.0


class NftError(Exception):
    """The table could not be installed, read or removed; the message says what is missing."""


@dataclass(frozen=True, slots=True)
class Ruleset:
    """What the table diverts and refuses, and where diverted traffic goes."""

    dns_port_v4: int
    """Port of the shim's DNS listener on 127.0.0.1."""
    dns_port_v6: int
    """Port of the shim's DNS listener on ::1 (0: IPv6 DNS is not diverted but refused)."""
    tcp_port_v4: int
    """Port of the transparent listener on 127.0.0.1."""
    tcp_port_v6: int
    """Port of the transparent listener on ::1 (0: IPv6 web traffic is refused)."""
    ports: tuple[int, ...] = (80, 443)
    """TCP destination ports diverted to the transparent listener."""
    allow_quic: bool = False
    allow_dot: bool = False
    fail_mode: str = FAIL_OPEN
    mark: int = MARK

    def render(self) -> str:
        """The ``nft -f`` script: replace any old table with this one, in one transaction."""
        mark = f"meta mark {self.mark:#x} return"
        ports = ", ".join(str(p) for p in self.ports)
        divert = [mark]
        refuse = [mark]
        for proto, dns_port, tcp_port in (
            ("ipv4", self.dns_port_v4, self.tcp_port_v4),
            ("ipv6", self.dns_port_v6, self.tcp_port_v6),
        ):
            match = f"meta nfproto {proto}"
            if dns_port:
                divert.append(
                    f"{match} meta l4proto {{ tcp, udp }} th dport 53 redirect to :{dns_port}"
                )
            else:
                refuse.append(f"{match} meta l4proto {{ tcp, udp }} th dport 53 reject")
            if ports and tcp_port:
                divert.append(f"{match} tcp dport {{ {ports} }} redirect to :{tcp_port}")
            elif ports:
                refuse.append(f"{match} tcp dport {{ {ports} }} reject with tcp reset")
        if not self.allow_quic:
            refuse.append("udp dport 443 reject")
        if not self.allow_dot:
            refuse.append("tcp dport 853 reject with tcp reset")
            refuse.append("udp dport 853 reject")
        comment = f"{COMMENT_PREFIX} fail-mode={self.fail_mode} pid={os.getpid()}"
        return "\n".join(
            [
                f"table {FAMILY} {TABLE}",
                f"delete table {FAMILY} {TABLE}",
                f"table {FAMILY} {TABLE} {{",
                f'  comment "{comment}"',
                "  chain divert {",
                "    type nat hook output priority -100; policy accept;",
                *(f"    {rule}" for rule in divert),
                "  }",
                "  chain refuse {",
                "    type filter hook output priority 0; policy accept;",
                *(f"    {rule}" for rule in refuse),
                "  }",
                "}",
                "",
            ]
        )


def _nft(args: Sequence[str], script: str | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("nft")
    if binary is None:
        raise NftError(
            "interception needs the nft command (Debian/Ubuntu package nftables, "
            "Fedora/RHEL nftables): not found on PATH"
        )
    try:
        return subprocess.run(
            [binary, *args],
            input=script,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NftError(f"running {binary} failed: {exc}") from exc


def _explain(stderr: str) -> str:
    text = stderr.strip()
    if "Operation not permitted" in text:
        return f"{text}\ninterception needs CAP_NET_ADMIN: run the shim as root or grant it"
    if "No such file or directory" in text or "Protocol not supported" in text:
        return (
            f"{text}\nthe kernel refused the table: it needs nf_tables with the nat "
            "(nft_redir, nf_nat) and reject (nft_reject_inet) support"
        )
    return text


def install(ruleset: Ruleset) -> None:
    """Install (or atomically replace) the table; `NftError` says why it could not."""
    result = _nft(["-f", "-"], ruleset.render())
    if result.returncode != 0:
        raise NftError(f"nft could not install table {FAMILY} {TABLE}: {_explain(result.stderr)}")


def installed() -> str | None:
    """The table as ``nft list`` prints it, or None when there is none."""
    result = _nft(["list", "table", FAMILY, TABLE])
    if result.returncode == 0:
        return result.stdout
    if "No such file or directory" in result.stderr:
        return None
    raise NftError(f"nft could not read table {FAMILY} {TABLE}: {_explain(result.stderr)}")


def fail_mode(listing: str) -> str:
    """The fail mode a listed table was installed with (open when it does not say)."""
    marker = "fail-mode="
    at = listing.find(marker)
    if at < 0:
        return FAIL_OPEN
    word = listing[at + len(marker) :].split(maxsplit=1)[0].strip('"')
    return word if word in FAIL_MODES else FAIL_OPEN


def remove(*, keep_fail_closed: bool = False) -> bool:
    """Delete the table; True if one was deleted.

    With `keep_fail_closed`, a table installed in fail-closed mode is left in place (False).
    """
    listing = installed()
    if listing is None:
        return False
    if keep_fail_closed and fail_mode(listing) == FAIL_CLOSED:
        return False
    result = _nft(["delete", "table", FAMILY, TABLE])
    if result.returncode == 0:
        return True
    if "No such file or directory" in result.stderr:
        return False  # removed meanwhile (a concurrent ExecStopPost)
    raise NftError(f"nft could not remove table {FAMILY} {TABLE}: {_explain(result.stderr)}")
