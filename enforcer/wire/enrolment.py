"""Device enrolment on the wire: what a shim sends to ``POST /api/v1/enroll`` and gets back.

The shim builds the request from its `DeviceIdentity` (`enrol_body`); the server validates it
with `EnrollRequest`. tests/api/test_wire.py checks that the two agree.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from enforcer.wire.base import CamelModel
from enforcer.wire.limits import DEVICE_ID_MAX, HOSTNAME_MAX, IP_MAX, OS_MAX, USER_MAX, GroupName

DeviceId = Annotated[
    str, Field(min_length=1, max_length=DEVICE_ID_MAX, pattern=r"^[A-Za-z0-9._-]+$")
]
"""A device id: chosen by the device, unique in the fleet."""

SECRET_MAX = 1024
"""The longest enrolment secret accepted (the server's is at least 16 characters)."""
LIST_MAX = 32
"""Most local addresses, and most device groups, a device may report."""


class EnrollRequest(CamelModel):
    """What a device says about itself when it enrols."""

    enroll_secret: str = Field(max_length=SECRET_MAX)
    device_id: DeviceId
    hostname: str = Field(default="", max_length=HOSTNAME_MAX)
    os: str = Field(default="", max_length=OS_MAX)
    user: str = Field(default="", max_length=USER_MAX)
    local_ips: list[Annotated[str, Field(max_length=IP_MAX)]] = Field(
        default_factory=list, max_length=LIST_MAX
    )
    groups: list[GroupName] = Field(default_factory=list, max_length=LIST_MAX)


class EnrollResponse(CamelModel):
    """The device's token: shown once, stored by the server only as a hash."""

    device_id: str
    device_token: str
    groups: list[str]
