"""The facts reporter: tells the server when this host's hostname, OS, agent version, user or
addresses change (``PUT /api/v1/devices/self``).

Every ``interval`` seconds (30 by default) it reads the facts again: a hostname, a few ioctls
and ``/proc/net/if_inet6`` on Linux, well under a millisecond. A change is applied to the
device's identity at once (`on_change`: later events carry the new hostname and address, a
re-enrolment the new facts) and sent to the server; the first check, at start, always sends,
since the facts may have changed while the shim was stopped.

A failed send (server down, an old server without the route) is retried at the next check, and
logged once per run of failures, not every 30 seconds. The revision the device has applied is
not sent here: every sync request names it already (``since``), and the server records it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import structlog

from enforcer.shim.report.identity import DeviceIdentity, current_facts
from enforcer.shim.sync import EnrolmentError, ServerSession

log = structlog.get_logger(__name__)

DEFAULT_INTERVAL = 30.0
"""Seconds between two reads of the host's facts."""


class FactsReporter:
    """Watches the host's facts and reports their changes; run `run` as a task."""

    def __init__(
        self,
        session: ServerSession,
        device: DeviceIdentity,
        *,
        on_change: Callable[[DeviceIdentity], None] | None = None,
        interval: float = DEFAULT_INTERVAL,
        read: Callable[[], dict[str, Any]] = current_facts,
    ) -> None:
        self.session = session
        self.device = device
        self.on_change = on_change
        self.interval = interval
        self.read = read
        self.sent: dict[str, object] | None = None
        """The facts the server last accepted from this process (None: nothing yet)."""
        self.reports = 0
        self.failures = 0

    async def check(self) -> bool:
        """Read the facts; report them if the server has not accepted them yet. Returns whether
        a report was accepted now."""
        current = self.device.with_facts(self.read())
        if current != self.device:
            log.info(
                "identity.changed",
                hostname=current.hostname,
                local_ips=current.local_ips,
                os=current.os,
                os_version=current.os_version,
            )
            self.device = current
            if self.on_change is not None:
                self.on_change(current)
        body = current.facts_body()
        if body == self.sent:
            return False
        try:
            response = await self.session.request(
                "PUT", "/devices/self", json=body, timeout=httpx.Timeout(15.0)
            )
        except (httpx.HTTPError, EnrolmentError, OSError) as exc:
            self._failed(repr(exc))
            return False
        if response.status_code != 204:
            self._failed(f"answered {response.status_code}: {response.text[:200]}")
            return False
        self.sent = body
        self.reports += 1
        self.failures = 0
        return True

    def _failed(self, error: str) -> None:
        if not self.failures:
            log.warning("identity.report_failed", error=error, retry_in=self.interval)
        self.failures += 1

    async def run(self) -> None:
        """Check now, then every `interval` seconds, until cancelled."""
        while True:
            await self.check()
            await asyncio.sleep(self.interval)
