"""Who the shim runs on: a persistent device id plus the host's facts, and the device token file.

The server knows a device by the id it enrolled with, so the id must survive restarts and
re-enrolments: it is a uuid4 written once to ``device-id`` in the state directory. Hostname, OS,
user and local addresses are read at start (they describe the device *now*; a laptop's address
changes) and travel with enrolment and with every network event, so an admin reading an event
knows which machine and which person it came from without a join on the server.

The device token is a credential: it is written with mode 0600, atomically (a crash never leaves
half a token), and read back on start so a restarted shim does not enrol again.
"""

from __future__ import annotations

import contextlib
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

    @property
    def local_ip(self) -> str:
        """The address events carry: the first non-loopback one, or empty."""
        return self.local_ips[0] if self.local_ips else ""

    def enrol_body(self, secret: str) -> dict[str, object]:
        """The ``POST /api/v1/enroll`` body."""
        return {
            "enrollSecret": secret,
            "deviceId": self.device_id,
            "hostname": self.hostname,
            "os": self.os,
            "user": self.user,
            "localIps": list(self.local_ips),
            "groups": list(self.groups),
        }


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
    write_private(path, new + "\n")
    return new


def read_token(state_dir: Path) -> str | None:
    """The device token saved by the last enrolment, or None."""
    try:
        token = (state_dir / TOKEN_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return token or None


def save_token(state_dir: Path, token: str, groups: tuple[str, ...] = ()) -> None:
    """Keep the device token (mode 0600) and the groups it was enrolled with."""
    write_private(state_dir / GROUPS_FILE, "".join(f"{g}\n" for g in sorted(set(groups))))
    write_private(state_dir / TOKEN_FILE, token + "\n")


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
    """The host's non-loopback IPv4 addresses, read from the interfaces (no packet is sent)."""
    found: list[str] = []
    if sys.platform.startswith("linux"):
        found = _linux_interface_ips()
    if not found:
        with contextlib.suppress(OSError):
            found = socket.gethostbyname_ex(socket.gethostname())[2]
    unique = dict.fromkeys(ip for ip in found if not ipaddress.ip_address(ip).is_loopback)
    return tuple(unique)


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


def load_identity(state_dir: Path, groups: tuple[str, ...] = ()) -> DeviceIdentity:
    """This device's identity: the persistent id plus facts read now."""
    return DeviceIdentity(
        device_id=device_id(state_dir),
        hostname=socket.gethostname(),
        os=f"{platform.system()} {platform.release()}".strip(),
        user=current_user(),
        local_ips=local_ips(),
        groups=tuple(dict.fromkeys(groups)),
    )
