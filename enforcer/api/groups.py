"""Which device groups an enrolling device is in: decided by the server, never by the device.

A device's groups choose which group-scoped indicators it receives, so a device that could
pick its own would pick the most lenient one. The server grants, in this order of authority:

1. an admin's assignment (``PUT /api/v1/devices/{id}/groups``), which stands until changed;
2. otherwise, the groups of the enrolment secret the device presented (``group_secrets``:
   one secret per group; the shared ``enroll_secret`` grants none), plus
3. the groups whose ``hostnames`` patterns in the policy's ``device_groups`` match the
   device's hostname.

What the device asked for (``groups`` in its enrolment) is recorded beside its groups and
granted only with ``trust_device_groups`` (labs and migrations).
"""

from __future__ import annotations

import fnmatch
import hmac
import threading
from collections.abc import Sequence
from pathlib import Path

import structlog

from enforcer.config import Settings
from enforcer.errors import EnforcerError
from enforcer.policy.loader import directory_digest, load_policy_files

log = structlog.get_logger("enforcer.api")


class GroupDecider:
    """The server's rules for device groups: secrets per group and hostname patterns."""

    def __init__(self, settings: Settings, enroll_secret: bytes) -> None:
        self._enroll_secret = enroll_secret
        self._secrets = [
            (secret.get_secret_value().encode("utf-8", "surrogateescape"), group)
            for group, secret in sorted(settings.group_secrets.items())
        ]
        self.trust_requests = settings.trust_device_groups
        self.policy_dir: Path = settings.policy_dir
        self._lock = threading.Lock()
        self._digest: str | None = None
        self._patterns: tuple[tuple[str, str], ...] = ()

    def secret_groups(self, presented: bytes) -> tuple[str, ...] | None:
        """The groups a presented enrolment secret grants (() for the shared secret), or None
        when it is no enrolment secret at all. Every secret is compared in constant time."""
        known = hmac.compare_digest(presented, self._enroll_secret)
        granted = []
        for secret, group in self._secrets:
            if hmac.compare_digest(presented, secret):
                known = True
                granted.append(group)
        return tuple(granted) if known else None

    def decide(
        self, *, secret_groups: Sequence[str], hostname: str, requested: Sequence[str]
    ) -> tuple[str, ...]:
        """The groups of an enrolling device (an admin's assignment, kept by the store, wins)."""
        groups = set(secret_groups) | set(self.hostname_groups(hostname))
        if self.trust_requests:
            groups |= set(requested)
        return tuple(sorted(groups))

    def hostname_groups(self, hostname: str) -> tuple[str, ...]:
        """The policy's groups whose hostname patterns match `hostname` (case-insensitive)."""
        name = hostname.lower()
        return tuple(
            sorted(
                {group for group, pattern in self._rules() if fnmatch.fnmatchcase(name, pattern)}
            )
        )

    def _rules(self) -> tuple[tuple[str, str], ...]:
        """(group, pattern) pairs of the policy directory, re-read when its files change; a
        policy set that does not load keeps the last good rules (and says so in the log)."""
        with self._lock:
            try:
                digest = directory_digest(self.policy_dir)
            except (OSError, EnforcerError):
                return self._patterns
            if digest != self._digest:
                try:
                    policy = load_policy_files(self.policy_dir)
                except EnforcerError as exc:
                    log.warning("device_group_rules_not_loaded", error=str(exc)[:300])
                    self._digest = digest
                    return self._patterns
                self._patterns = tuple(
                    (located.item.name, pattern.lower())
                    for located in policy.device_groups
                    for pattern in located.item.hostnames
                )
                self._digest = digest
            return self._patterns
