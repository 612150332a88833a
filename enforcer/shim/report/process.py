"""Which process and OS user own a local socket: the attribution of intercepted traffic.

Given the client end of a connection or DNS query (protocol, local address and port, as the
shim sees them in the peer address of a diverted connection), two steps find the owner:

1. the socket: ``/proc/net/{tcp,udp}{,6}`` list every socket of the network namespace with its
   local address, the uid that created it and its inode;
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

    def lookup(self, proto: str, host: str, port: int) -> ProcessInfo | None:
        """The owner of the `proto` ("tcp" or "udp") socket bound to (host, port), or None."""
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
        """Process ids whose /proc entry belongs to `uid` (any, for root's sockets)."""
        pids = []
        for entry in os.scandir(self.proc):
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if uid == 0 or entry.stat().st_uid == uid:
                        pids.append(int(entry.name))
        return pids


def attribute(event: NetworkEvent, owner: ProcessInfo) -> NetworkEvent:
    """`event` naming the process and OS user that made it."""
    return dataclasses.replace(
        event,
        user=owner.user,
        pid=owner.pid,
        process_name=owner.name,
        process_path=owner.path,
    )
