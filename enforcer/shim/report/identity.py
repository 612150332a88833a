"""Who the shim runs on: a persistent device id plus the host's facts, and the device token file.

The server knows a device by the id it enrolled with, so the id must survive restarts and
re-enrolments: it is a uuid4 written once to ``device-id`` in the state directory. The host's
facts (hostname, OS name and version, agent version, user, interface addresses) are read at start
and again every few seconds by `enforcer.shim.report.facts` (a laptop's address changes): they
travel with enrolment, with ``PUT /api/v1/devices/self`` whenever they change, and with every
network event, so an admin reading an event knows which machine and which person it came from
without a join on the server.

The device token is a credential: it is written with mode 0600, atomically (a crash never leaves
half a token), and read back on start so a restarted shim does not enrol again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import ipaddress
import os
import platform
import socket
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from enforcer import __version__
from enforcer.wire.enrolment import LIST_MAX
from enforcer.wire.limits import AGENT_VERSION_MAX, HOSTNAME_MAX, OS_MAX, USER_MAX

log = structlog.get_logger(__name__)

DEVICE_ID_FILE = "device-id"
TOKEN_FILE = "device-token"
GROUPS_FILE = "device-groups"
"""The groups the device enrolled with: the server scopes its indicators by them."""


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """The facts the server and every event get about this device."""

    device_id: str
    hostname: str
    os: str
    user: str
    local_ips: tuple[str, ...] = ()
    groups: tuple[str, ...] = field(default=())
    """Device groups from the command line or config: which scoped indicators apply here."""
    os_version: str = ""
    agent_version: str = ""

    @property
    def local_ip(self) -> str:
        """The address events carry: the first non-loopback one, or empty."""
        return self.local_ips[0] if self.local_ips else ""

    def facts_body(self) -> dict[str, object]:
        """The host's facts as the wire's `DeviceFacts` (``PUT /api/v1/devices/self``)."""
        return {
            "hostname": self.hostname,
            "os": self.os,
            "osVersion": self.os_version,
            "agentVersion": self.agent_version,
            "user": self.user,
            "localIps": list(self.local_ips),
        }

    def enrol_body(self, secret: str) -> dict[str, object]:
        """The ``POST /api/v1/enroll`` body: the facts, the id, the secret and the groups."""
        return {
            "enrollSecret": secret,
            "deviceId": self.device_id,
            **self.facts_body(),
            "groups": list(self.groups),
        }

    def with_facts(self, facts: dict[str, Any]) -> DeviceIdentity:
        """This identity with the host's facts replaced (what `current_facts` read)."""
        return dataclasses.replace(self, **facts)


def secure_state_dir(state_dir: Path) -> None:
    """Make the state directory private to the shim's user, whatever the unit or umask says.

    It holds the device token, the indicator cache, the event spool and the bypasses: the
    directory becomes 0700 and what is in it 0600 (directories 0700). `enforcer shim` also
    runs with umask 077, so the SQLite files (and their -wal/-shm) it creates later are 0600.
    """
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.chmod(state_dir, 0o700)
    except OSError as exc:  # a read-only file system: the shim still enforces (from memory)
        log.error("shim.state_dir_not_writable", path=str(state_dir), error=repr(exc))
        return
    for path in state_dir.rglob("*"):
        with contextlib.suppress(OSError):  # a file that went away meanwhile
            if path.is_symlink():
                continue
            os.chmod(path, 0o700 if path.is_dir() else 0o600)


def read_secret_file(path: Path) -> str:
    """A secret kept in a file (one line; the trailing newline is not part of it).

    Raises ValueError naming the file when it cannot be read or is empty.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the secret ({exc})") from None
    secret = text.strip("\r\n")
    if not secret:
        raise ValueError(f"{path}: the file is empty")
    return secret


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically with mode 0600 (the file never exists with other modes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def device_id(state_dir: Path) -> str:
    """The device id kept in the state directory, created (uuid4) on first use."""
    path = state_dir / DEVICE_ID_FILE
    with contextlib.suppress(FileNotFoundError):
        text = path.read_text(encoding="utf-8").strip()
        with contextlib.suppress(ValueError):
            return str(uuid.UUID(text))
    new = str(uuid.uuid4())
    try:
        write_private(path, new + "\n")
    except OSError as exc:  # a read-only or full disk: this run uses the new id all the same
        log.error("shim.device_id_not_saved", path=str(path), error=repr(exc))
    return new


def read_token(state_dir: Path) -> str | None:
    """The device token saved by the last enrolment, or None."""
    try:
        token = (state_dir / TOKEN_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return token or None


def save_token(state_dir: Path, token: str, groups: tuple[str, ...] = ()) -> None:
    """Keep the device token (mode 0600) and the groups it was enrolled with. A disk that
    refuses (read-only, full) is logged: the caller keeps the token in memory, and the device
    enrols again at its next start."""
    try:
        write_private(state_dir / GROUPS_FILE, "".join(f"{g}\n" for g in sorted(set(groups))))
        write_private(state_dir / TOKEN_FILE, token + "\n")
    except OSError as exc:
        log.error("shim.token_not_saved", state_dir=str(state_dir), error=repr(exc))


def enrolled_groups(state_dir: Path) -> tuple[str, ...] | None:
    """The groups of the last enrolment (sorted), or None when unknown."""
    try:
        text = (state_dir / GROUPS_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return tuple(line for line in text.splitlines() if line)


def forget_token(state_dir: Path) -> None:
    """Delete a token the server rejected."""
    with contextlib.suppress(FileNotFoundError):
        (state_dir / TOKEN_FILE).unlink()


def current_user() -> str:
    """The logged-in user (the shim runs in the user's session), or empty."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def local_ips() -> tuple[str, ...]:
    """The host's addresses, IPv4 first, read from the interfaces (no packet is sent).

    Loopback and IPv6 link-local addresses are left out: they name no machine on the network.
    """
    found: list[str] = []
    if sys.platform.startswith("linux"):
        found = _linux_interface_ips() + _linux_ipv6()
    if not found:
        with contextlib.suppress(OSError):
            found = socket.gethostbyname_ex(socket.gethostname())[2]
    unique = dict.fromkeys(ip for ip in found if _names_the_host(ip))
    return tuple(unique)[:LIST_MAX]


def _names_the_host(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return not (address.is_loopback or address.is_link_local)


def _linux_interface_ips() -> list[str]:
    import fcntl
    import struct

    siocgifaddr = 0x8915
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            with contextlib.suppress(OSError):
                packed = struct.pack("256s", name.encode()[:15])
                raw = fcntl.ioctl(sock.fileno(), siocgifaddr, packed)
                found.append(socket.inet_ntoa(raw[20:24]))
    return found


def _linux_ipv6(path: str = "/proc/net/if_inet6") -> list[str]:
    """IPv6 addresses from the kernel's table (one line per address: 32 hex digits first)."""
    try:
        with open(path, encoding="ascii") as table:
            lines = table.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        digits = line.split(" ", 1)[0]
        if len(digits) == 32:
            with contextlib.suppress(ValueError):
                found.append(str(ipaddress.IPv6Address(bytes.fromhex(digits))))
    return found


def os_facts() -> tuple[str, str]:
    """(OS name, OS version) of this host, e.g. ("Debian GNU/Linux", "12 (bookworm), kernel 6.1")."""
    system = platform.system()
    if system == "Linux":
        release: dict[str, str] = {}
        with contextlib.suppress(OSError):
            release = platform.freedesktop_os_release()
        version = release.get("VERSION") or release.get("VERSION_ID") or ""
        kernel = f"kernel {os.uname().release}"
        return release.get("NAME") or "Linux", f"{version}, {kernel}" if version else kernel
    if system == "Darwin":
        return "macOS", platform.mac_ver()[0]
    return system, platform.version() if system == "Windows" else platform.release()


def current_facts() -> dict[str, Any]:
    """The host's facts now, cut to the wire's limits (`DeviceIdentity.with_facts` takes them)."""
    os_name, os_version = os_facts()
    return {
        "hostname": socket.gethostname()[:HOSTNAME_MAX],
        "os": os_name[:OS_MAX],
        "os_version": os_version[:OS_MAX],
        "agent_version": __version__[:AGENT_VERSION_MAX],
        "user": current_user()[:USER_MAX],
        "local_ips": local_ips(),
    }


def load_identity(state_dir: Path, groups: tuple[str, ...] = ()) -> DeviceIdentity:
    """This device's identity: the persistent id plus facts read now."""
    return DeviceIdentity(
        device_id=device_id(state_dir),
        hostname="",
        os="",
        user="",
        groups=tuple(dict.fromkeys(groups)),
    ).with_facts(current_facts())
