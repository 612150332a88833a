"""Field limits of the wire shapes, named once: the API validates with them, the shim cuts to them.

The store's columns have the same widths (a value that passes the API always fits its column).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

DOMAIN_MAX = 253
"""A DNS name's longest text form (RFC 1035: 255 octets on the wire, 253 as dotted text)."""
HOSTNAME_MAX = 255
"""A device's hostname as the OS reports it (POSIX HOST_NAME_MAX)."""
USER_MAX = 256
"""A user name (a Windows UPN can be long)."""
TITLE_MAX = 256
"""An indicator's title (Defender allows no more)."""
DESCRIPTION_MAX = 2048
"""An indicator's description."""
APP_ID_MAX = 128
"""A catalog app id; also device ids and actor names."""
DEVICE_ID_MAX = 128
"""A device id chosen by the device."""
OS_MAX = 128
"""A device's OS name; its version has the same limit."""
AGENT_VERSION_MAX = 64
"""The shim's version string (``enforcer.__version__``)."""
IP_MAX = 64
"""An IPv4 or IPv6 address in text (with a zone id)."""
BATCH_ID_MAX = 64
"""An event batch id chosen by the device."""
PROCESS_NAME_MAX = 255
"""A process's executable name (Linux cuts ``comm`` to 15 bytes; other systems do not)."""
PROCESS_PATH_MAX = 1024
"""A process's executable path."""
GROUP_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A device group name: 1 to 64 characters, never starting with ``@`` (the API's filter marker)."""
GroupName = Annotated[str, Field(pattern=GROUP_NAME_PATTERN)]
"""A device group name, validated (policy files, enrolment, manual indicators)."""
REVISION_MAX = (1 << 63) - 1
"""The highest store revision a request may name (a signed 64-bit column)."""
MAX_BYTES = 1 << 62
"""Upper bound of an event's byte counters (fits a signed 64-bit column with room to add)."""
