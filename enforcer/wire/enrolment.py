"""Device enrolment and identity on the wire: what a shim says about itself, and gets back.

`DeviceFacts` is what a device reports about the host it runs on (hostname, OS, agent version,
user, addresses): with its id, secret and groups at enrolment (``POST /api/v1/enroll``,
`EnrollRequest`), and alone whenever one of them changes (``PUT /api/v1/devices/self``). The shim
builds both bodies from its `DeviceIdentity` (`enrol_body`, `facts_body`); tests/api/test_wire.py
checks that they validate here.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from enforcer.wire.base import CamelModel
from enforcer.wire.limits import (
    AGENT_VERSION_MAX,
    DEVICE_ID_MAX,
    HOSTNAME_MAX,
    IP_MAX,
    OS_MAX,
    USER_MAX,
    GroupName,
)

DeviceId = Annotated[
    str, Field(min_length=1, max_length=DEVICE_ID_MAX, pattern=r"^[A-Za-z0-9._-]+$")
]
"""A device id: chosen by the device, unique in the fleet."""

NEW_TOKEN_HEADER = "Enforcer-Device-Token"
"""Response header of a sync answer handing the device the token that replaces its current one
(past half the token's lifetime; the old token works until the new one is first used)."""

SECRET_MAX = 1024
"""The longest enrolment secret accepted (the server's is at least 16 characters)."""
LIST_MAX = 32
"""Most local addresses, and most device groups, a device may report."""


class DeviceFacts(CamelModel):
    """What a device reports about the host it runs on; sent again whenever any of it changes."""

    hostname: str = Field(default="", max_length=HOSTNAME_MAX)
    os: str = Field(default="", max_length=OS_MAX)
    """The OS name, e.g. ``Debian GNU/Linux``, ``Windows``, ``macOS``."""
    os_version: str = Field(default="", max_length=OS_MAX)
    """The OS version, e.g. ``12 (bookworm), kernel 6.1.0-18-amd64``."""
    agent_version: str = Field(default="", max_length=AGENT_VERSION_MAX)
    """The shim's version (``enforcer.__version__``)."""
    user: str = Field(default="", max_length=USER_MAX)
    local_ips: list[Annotated[str, Field(max_length=IP_MAX)]] = Field(
        default_factory=list, max_length=LIST_MAX
    )
    """The addresses of the host's interfaces (loopback and link-local ones left out)."""


class EnrollRequest(DeviceFacts):
    """What a device says about itself when it enrols: its facts, id, secret and groups."""

    enroll_secret: str = Field(max_length=SECRET_MAX)
    device_id: DeviceId
    groups: list[GroupName] = Field(default_factory=list, max_length=LIST_MAX)
    """The groups the device asks for: recorded; the server decides (`enforcer.api.groups`)."""


class EnrollResponse(CamelModel):
    """The device's token: shown once, stored by the server only as a hash."""

    device_id: str
    device_token: str
    groups: list[str]
    """The groups the server put the device in (not necessarily those it asked for)."""


class GroupAssignment(CamelModel):
    """An admin's choice of a device's groups (``PUT /api/v1/devices/{id}/groups``)."""

    groups: list[GroupName] = Field(max_length=LIST_MAX)
