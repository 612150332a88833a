"""Which process and OS user own a local socket: the attribution of intercepted traffic.

Given the client end of a connection or DNS query (protocol, local address and port, as the
shim sees them in the peer address of a diverted connection), two steps find the owner:

1. the socket: its inode and the uid that created it. A TCP connection whose other end is
   known (a diverted connection's original destination) is looked up by its four addresses
   with netlink ``sock_diag``, a hash lookup in the kernel; otherwise ``/proc/net/{tcp,udp}{,6}``
   list every socket of the network namespace with its local address. Reading
   ``/proc/net/tcp`` walks the kernel's whole TCP hash table (milliseconds even in an empty
   namespace), ``/proc/net/udp`` is cheap;
2. the process: a socket inode appears as the link ``socket:[INODE]`` in ``/proc/PID/fd/`` of
   every process holding it. Scanning every process's descriptors costs milliseconds, so the
   processes that owned a socket lately are tried first (a browser opens many connections), then
   only the processes of the socket's uid; what a scan reads is remembered per inode.

The name is ``/proc/PID/comm``, the path the ``/proc/PID/exe`` link, the user the uid's login
name (or the uid as text). A socket closed before the lookup, or a process of another
namespace, gives what could be found: the uid and user without a pid, or nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import pwd
import socket
import struct
from collections import OrderedDict
from dataclasses import dataclass

from enforcer.models import NetworkEvent

_PROC = "/proc"
_RECENT = 16
"""Processes tried first: the last owners found."""
_CACHE = 4096
"""Socket inodes remembered with their process."""


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """The owner of a socket; ``pid`` 0 when only the uid could be found."""

    pid: int
    name: str
    path: str
    uid: int
    user: str


def _hex_address(host: str) -> str:
    """An address as ``/proc/net`` prints it: 32-bit words in host (little-endian) order."""
    packed = ipaddress.ip_address(host).packed
    return "".join(packed[i : i + 4][::-1].hex().upper() for i in range(0, len(packed), 4))


def _v4_mapped(host: str) -> str:
    return _hex_address(f"::ffff:{host}")


class ProcessFinder:
    """Finds socket owners, with the caches that keep repeated lookups cheap."""

    def __init__(self, proc: str = _PROC) -> None:
        self.proc = proc
        self._owners: OrderedDict[int, int] = OrderedDict()
        self._recent: OrderedDict[int, None] = OrderedDict()
        self._users: dict[int, str] = {}
        self._diag = _SockDiag()

    def lookup(
        self, proto: str, host: str, port: int, remote: tuple[str, int] | None = None
    ) -> ProcessInfo | None:
        """The owner of the `proto` ("tcp" or "udp") socket bound to (host, port), connected to
        `remote` when it is given, or None."""
        found = None
        if proto == "tcp" and remote is not None:
            found = self._diag.tcp(host, port, *remote)
        if found is None:
            found = self.socket(proto, host, port)
        if found is None:
            return None
        inode, uid = found
        user = self.user(uid)
        pid = self._pid(inode, uid)
        if not pid:
            return ProcessInfo(0, "", "", uid, user)
        base = f"{self.proc}/{pid}"
        try:
            with open(f"{base}/comm", encoding="utf-8", errors="replace") as comm:
                name = comm.read().strip()
        except OSError:
            name = ""
        try:
            path = os.readlink(f"{base}/exe")
        except OSError:
            path = ""
        return ProcessInfo(pid, name, path, uid, user)

    def socket(self, proto: str, host: str, port: int) -> tuple[int, int] | None:
        """(inode, uid) of the socket with that local address, from ``/proc/net``."""
        port_hex = f"{port:04X}"
        v6 = ":" in host
        # The local address column is the one preceded by "sl:"; finding it in the text is
        # several times faster than splitting every line.
        keys = [f": {_hex_address(host)}:{port_hex} "]
        if not v6:
            keys.append(f": {_v4_mapped(host)}:{port_hex} ")  # a dual-stack socket
        tables = (f"{proto}6",) if v6 else (proto, f"{proto}6")
        for table in tables:
            try:
                with open(f"{self.proc}/net/{table}", encoding="ascii") as file:
                    text = file.read()
            except OSError:
                continue
            for key in keys:
                at = text.find(key)
                if at >= 0:
                    fields = text[at : text.find("\n", at)].split()
                    if len(fields) > 9 and fields[9] != "0":
                        return int(fields[9]), int(fields[7])
        return None

    def user(self, uid: int) -> str:
        """The login name of `uid` (its number as text when it has none)."""
        name = self._users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
            self._users[uid] = name
        return name

    def _pid(self, inode: int, uid: int) -> int:
        pid = self._owners.get(inode)
        if pid is not None and self._scan(pid, inode):
            return pid
        for candidate in reversed(self._recent):
            if self._scan(candidate, inode):
                return self._found(inode, candidate)
        for candidate in self._pids_of(uid):
            if candidate not in self._recent and self._scan(candidate, inode):
                return self._found(inode, candidate)
        return 0

    def _found(self, inode: int, pid: int) -> int:
        self._recent[pid] = None
        self._recent.move_to_end(pid)
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)
        return pid

    def _scan(self, pid: int, inode: int) -> bool:
        """Read `pid`'s descriptors, remembering its sockets; True if it holds `inode`."""
        fd_dir = f"{self.proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            self._recent.pop(pid, None)
            return False
        owners = self._owners
        hit = False
        for fd in fds:
            with contextlib.suppress(OSError):
                link = os.readlink(f"{fd_dir}/{fd}")
                if link.startswith("socket:["):
                    number = int(link[8:-1])
                    owners[number] = pid
                    owners.move_to_end(number)
                    hit = hit or number == inode
        while len(owners) > _CACHE:
            owners.popitem(last=False)
        return hit

    def _pids_of(self, uid: int) -> list[int]:
        """Process ids whose /proc entry belongs to `uid` (any, for root's sockets), newest
        first: a process not seen before usually makes its first connection soon after it
        started, so the scan of every root process rarely runs to the end."""
        pids = []
        for entry in os.scandir(self.proc):
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if uid == 0 or entry.stat().st_uid == uid:
                        pids.append(int(entry.name))
        pids.sort(reverse=True)
        return pids


_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLMSG_ERROR = 2
_NLM_F_REQUEST = 1
_NO_COOKIE = 0xFFFFFFFF
_ALL_STATES = 0xFFFFFFFF
_HEADER = struct.Struct("=IHHII")
"""nlmsghdr: length, type, flags, sequence, port id."""
_REQUEST = struct.Struct("=BBBBI")
"""inet_diag_req_v2 before its socket id: family, protocol, extensions, pad, states."""
_UID_INODE = struct.Struct("=II")
_UID_AT = _HEADER.size + 4 + 48 + 12
"""Offset of inet_diag_msg's uid: after the header, 4 bytes, the 48-byte socket id and
expires, rqueue and wqueue."""


class _SockDiag:
    """Exact TCP socket lookups over netlink ``sock_diag`` (one socket, opened on first use)."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._broken = False
        self._seq = 0

    def tcp(self, src: str, sport: int, dst: str, dport: int) -> tuple[int, int] | None:
        """(inode, uid) of the TCP socket src:sport -> dst:dport, or None (also when netlink
        is not available, so the caller falls back to ``/proc/net``)."""
        if self._broken:
            return None
        try:
            local, remote = ipaddress.ip_address(src), ipaddress.ip_address(dst)
            if local.version != remote.version:
                return None
            if self._sock is None:
                self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG)
                self._sock.settimeout(1.0)
            family = socket.AF_INET6 if local.version == 6 else socket.AF_INET
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            sockid = (
                struct.pack("!HH", sport, dport)
                + local.packed.ljust(16, b"\0")
                + remote.packed.ljust(16, b"\0")
                + struct.pack("=III", 0, _NO_COOKIE, _NO_COOKIE)
            )
            body = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, _ALL_STATES) + sockid
            header = _HEADER.pack(
                _HEADER.size + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, self._seq, 0
            )
            self._sock.send(header + body)
            while True:
                reply = self._sock.recv(8192)
                _, kind, _, seq, _ = _HEADER.unpack_from(reply)
                if seq == self._seq:
                    break
        except (OSError, ValueError, struct.error):
            self._broken = self._sock is None  # netlink refused here: use /proc/net from now on
            return None
        if kind == _NLMSG_ERROR or len(reply) < _UID_AT + _UID_INODE.size:
            return None
        uid, inode = _UID_INODE.unpack_from(reply, _UID_AT)
        return (inode, uid) if inode else None


def attribute(event: NetworkEvent, owner: ProcessInfo) -> NetworkEvent:
    """`event` naming the process and OS user that made it."""
    return dataclasses.replace(
        event,
        user=owner.user,
        pid=owner.pid,
        process_name=owner.name,
        process_path=owner.path,
    )
