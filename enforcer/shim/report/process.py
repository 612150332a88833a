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
   only the processes of the socket's uid. Every socket a scan sees is remembered with its
   process, so the connections a program opened before the scan cost no scan of their own.

`ProcessFinder.lookup_many` looks up several sockets with each process's descriptors read at
most once. `Attribution` uses it to take the lookup off a diverted connection's critical path:
a socket is queued once its connection is on its way, and everything queued during one turn of
the event loop is looked up together on the next.

The name is ``/proc/PID/comm``, the path the ``/proc/PID/exe`` link, the user the uid's login
name (or the uid as text). A socket closed before the lookup, or a process of another
namespace, gives what could be found: the uid and user without a pid, or nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import os
import pwd
import socket
import struct
from collections import OrderedDict
from collections.abc import Sequence
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


Socket = tuple[str, str, int, tuple[str, int] | None]
"""A client socket to attribute: protocol ("tcp" or "udp"), local address, local port, and the
remote (address, port) it is connected to when known."""


class ProcessFinder:
    """Finds socket owners, with the caches that keep repeated lookups cheap."""

    def __init__(self, proc: str = _PROC) -> None:
        self.proc = proc
        self._owners: OrderedDict[int, int] = OrderedDict()
        self._recent: OrderedDict[int, None] = OrderedDict()
        self._listings: dict[int, frozenset[str]] = {}
        """The descriptors of each recent owner at its last scan."""
        self._users: dict[int, str] = {}
        self._diag = _SockDiag()

    def lookup(
        self, proto: str, host: str, port: int, remote: tuple[str, int] | None = None
    ) -> ProcessInfo | None:
        """The owner of the `proto` ("tcp" or "udp") socket bound to (host, port), connected to
        `remote` when it is given, or None."""
        return self.lookup_many([(proto, host, port, remote)])[0]

    def lookup_many(self, sockets: Sequence[Socket]) -> list[ProcessInfo | None]:
        """The owners of several sockets, each process's descriptors read at most once: a
        browser opening ten connections at once costs one scan, not ten."""
        exact = [
            (host, port, *remote)
            for proto, host, port, remote in sockets
            if proto == "tcp" and remote is not None
        ]
        by_diag = iter(self._diag.tcp_many(exact)) if exact else iter(())
        found: list[tuple[int, int] | None] = []
        for proto, host, port, remote in sockets:
            ids = None
            if proto == "tcp" and remote is not None:
                ids = next(by_diag)
            found.append(ids if ids is not None else self.socket(proto, host, port))
        pids = self._pids({inode: uid for inode, uid in (ids for ids in found if ids is not None)})
        programs: dict[int, tuple[str, str]] = {}
        owners: list[ProcessInfo | None] = []
        for ids in found:
            if ids is None:
                owners.append(None)
                continue
            inode, uid = ids
            pid = pids.get(inode, 0)
            if not pid:
                owners.append(ProcessInfo(0, "", "", uid, self.user(uid)))
                continue
            program = programs.get(pid)
            if program is None:
                program = programs[pid] = self._program(pid)
            owners.append(ProcessInfo(pid, *program, uid, self.user(uid)))
        return owners

    def _program(self, pid: int) -> tuple[str, str]:
        """(name, executable path) of `pid`, each "" when it cannot be read."""
        base = f"{self.proc}/{pid}"
        try:  # raw reads: a text file object costs more than the three system calls
            comm = os.open(f"{base}/comm", os.O_RDONLY)
            try:
                name = os.read(comm, 64).decode("utf-8", "replace").strip()
            finally:
                os.close(comm)
        except OSError:
            name = ""
        try:
            path = os.readlink(f"{base}/exe")
        except OSError:
            path = ""
        return name, path

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

    def _pids(self, uids: dict[int, int]) -> dict[int, int]:
        """The process holding each socket inode (keys of `uids`, inode -> uid) that is found.

        A socket seen in a process's descriptors is taken to be that process's for as long as
        it lives (its inode is not reused meanwhile): only sockets not seen yet cost a scan.
        """
        owners = self._owners
        found = {inode: owners[inode] for inode in uids if inode in owners}
        left = {inode for inode in uids if inode not in found}
        if not left:
            return found
        scanned: set[int] = set()
        for pid in reversed(list(self._recent)):
            scanned.add(pid)
            self._scan(pid, left, found)
            if not left:
                return found
        for uid in sorted({uids[inode] for inode in left}):
            for pid in self._pids_of(uid):
                if not any(uids[inode] == uid for inode in left):
                    break
                if pid not in scanned:
                    scanned.add(pid)
                    self._scan(pid, left, found)
        return found

    def _scan(self, pid: int, left: set[int], found: dict[int, int]) -> None:
        """Read `pid`'s descriptors until it is seen holding every inode of `left` (each one
        found moves to `found`), remembering every socket read.

        The likeliest first: descriptors not there at the last scan of `pid`, then the highest
        numbers (a program's long-lived descriptors are its lowest). A program with hundreds
        of descriptors thus costs a few reads per new connection, not hundreds.
        """
        try:
            directory = os.open(f"{self.proc}/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            self._forget(pid)
            return
        owners = self._owners
        hit = False
        try:
            fds = os.listdir(directory)  # in ascending order
            before = self._listings.get(pid, frozenset())
            new = [fd for fd in fds if fd not in before]
            for fd in [*reversed(new), *(fd for fd in reversed(fds) if fd in before)]:
                try:
                    link = os.readlink(fd, dir_fd=directory)
                except OSError:
                    continue  # closed meanwhile
                if link.startswith("socket:["):
                    inode = int(link[8:-1])
                    owners[inode] = pid
                    owners.move_to_end(inode)
                    if inode in left:
                        left.discard(inode)
                        found[inode] = pid
                        hit = True
                        if not left:
                            break
        except OSError:
            self._forget(pid)
            return
        finally:
            os.close(directory)
        while len(owners) > _CACHE:
            owners.popitem(last=False)
        if hit:
            self._recent[pid] = None
            self._recent.move_to_end(pid)
            self._listings[pid] = frozenset(fds)
            if len(self._recent) > _RECENT:
                self._forget(next(iter(self._recent)))

    def _forget(self, pid: int) -> None:
        self._recent.pop(pid, None)
        self._listings.pop(pid, None)

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


class Owner:
    """The owner of one socket, looked up when first needed or in a batch (`Attribution`)."""

    __slots__ = ("_attribution", "_info", "done", "socket")

    def __init__(self, attribution: Attribution, sock: Socket) -> None:
        self._attribution = attribution
        self._info: ProcessInfo | None = None
        self.socket = sock
        self.done = False

    @property
    def info(self) -> ProcessInfo | None:
        """The owner, looked up now (with any others queued) if it was not yet."""
        if not self.done:
            self._attribution.settle(self)
        return self._info

    def fill(self, info: ProcessInfo | None) -> None:
        """Set the owner found (`Attribution.settle` does)."""
        self._info = info
        self.done = True


class Attribution:
    """Socket owners looked up off a connection's critical path, in batches, on the event loop.

    `owner` looks nothing up yet. `soon` queues the lookup for the loop's next turn, while the
    connection goes on (its first bytes reach the origin first); every socket queued during
    one turn is looked up together (`ProcessFinder.lookup_many`), so a burst of connections from
    one program costs one scan of its descriptors. `Owner.info` looks up at once what is not
    known yet. Either must happen while the client still waits for an answer: a socket already
    closed has no owner left to find.
    """

    def __init__(self, finder: ProcessFinder) -> None:
        self.finder = finder
        self._queue: list[Owner] = []

    def owner(
        self, proto: str, host: str, port: int, remote: tuple[str, int] | None = None
    ) -> Owner:
        """The owner of a socket (see `ProcessFinder.lookup`), not looked up yet."""
        return Owner(self, (proto, host, port, remote))

    def soon(self, owner: Owner) -> None:
        """Look `owner` up on the loop's next turn, with the others queued by then."""
        if owner.done or owner in self._queue:
            return
        if not self._queue:
            asyncio.get_running_loop().call_soon(self.settle)
        self._queue.append(owner)

    def settle(self, also: Owner | None = None) -> None:
        """Look up every owner queued (and `also`)."""
        queue, self._queue = self._queue, []
        if also is not None and also not in queue:
            queue.append(also)
        if not queue:
            return
        try:
            infos = self.finder.lookup_many([owner.socket for owner in queue])
        except (OSError, ValueError):
            infos = [None] * len(queue)
        for owner, info in zip(queue, infos, strict=True):
            owner.fill(info)


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
_PORTS = struct.Struct("!HH")
_NO_INTERFACE_NO_COOKIE = struct.pack("=III", 0, _NO_COOKIE, _NO_COOKIE)
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

    def tcp_many(
        self, sockets: Sequence[tuple[str, int, str, int]]
    ) -> list[tuple[int, int] | None]:
        """(inode, uid) of each TCP socket (src, sport, dst, dport), or None (also when netlink
        is not available, so the caller falls back to ``/proc/net``). The requests go in one datagram (the kernel answers
        each on its own), so a burst of connections costs one send, not one each."""
        results: list[tuple[int, int] | None] = [None] * len(sockets)
        if self._broken or not sockets:
            return results
        pending: dict[int, int] = {}
        requests = []
        for index, (src, sport, dst, dport) in enumerate(sockets):
            family = socket.AF_INET6 if ":" in src else socket.AF_INET
            try:
                local = socket.inet_pton(family, src).ljust(16, b"\0")
                remote = socket.inet_pton(family, dst).ljust(16, b"\0")
            except OSError:
                continue  # not an address, or not of the same family as `src`
            self._seq = seq = (self._seq + 1) & 0xFFFFFFFF
            body = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, _ALL_STATES)
            body += _PORTS.pack(sport, dport) + local + remote + _NO_INTERFACE_NO_COOKIE
            header = _HEADER.pack(
                _HEADER.size + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, seq, 0
            )
            requests.append(header + body)
            pending[seq] = index
        if not requests:
            return results
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG)
                self._sock.settimeout(1.0)
            self._sock.send(b"".join(requests))
            while pending:
                reply = self._sock.recv(8192)
                at = 0
                while at + _HEADER.size <= len(reply) and pending:
                    length, kind, _, seq, _ = _HEADER.unpack_from(reply, at)
                    index = pending.pop(seq, -1)
                    if index >= 0 and kind != _NLMSG_ERROR:
                        end = at + length
                        if end - at >= _UID_AT + _UID_INODE.size:
                            uid, inode = _UID_INODE.unpack_from(reply, at + _UID_AT)
                            results[index] = (inode, uid) if inode else None
                    at += max(_align(length), _HEADER.size)
        except (OSError, struct.error):
            self._broken = self._sock is None  # netlink refused here: use /proc/net from now on
        return results


def _align(length: int) -> int:
    """A netlink message's length rounded up to the 4-byte boundary of the next one."""
    return (length + 3) & ~3


def attribute(event: NetworkEvent, owner: ProcessInfo) -> NetworkEvent:
    """`event` naming the process and OS user that made it."""
    return dataclasses.replace(
        event,
        user=owner.user,
        pid=owner.pid,
        process_name=owner.name,
        process_path=owner.path,
    )
