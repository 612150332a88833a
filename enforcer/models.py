"""Plain data shared by every layer: the field's vocabulary as enums and frozen records.

Nothing here does I/O or imports another Enforcer module, so every layer may depend on it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class Tag(StrEnum):
    """The tag an organisation gives a cloud app: a sanction (sanctioned, unsanctioned,
    monitored) or a review state (unreviewed, in-review).

    A review state never enforces anything: an app under review is decided by the rules that
    match it, as if its entry were not written (see `is_review`).
    """

    SANCTIONED = "sanctioned"
    UNSANCTIONED = "unsanctioned"
    MONITORED = "monitored"
    UNREVIEWED = "unreviewed"
    """The default of a discovered app that no policy entry tags; may also be written."""
    IN_REVIEW = "in-review"
    """Someone (the entry's review owner) is deciding, by the review's due date."""

    @property
    def is_review(self) -> bool:
        """A review state rather than a sanction: it makes no decision and no indicator."""
        return self in (Tag.UNREVIEWED, Tag.IN_REVIEW)


SANCTION_TAGS: tuple[Tag, ...] = (Tag.SANCTIONED, Tag.UNSANCTIONED, Tag.MONITORED)
"""The tags that decide what endpoints do: the only ones a rule or an exception may give."""


class Action(StrEnum):
    """What an endpoint does with traffic to an indicator (Defender Indicators API values)."""

    BLOCK = "Block"
    WARN = "Warn"
    AUDIT = "Audit"
    ALERT = "Alert"
    ALLOWED = "Allowed"

    @classmethod
    def from_policy(cls, word: str) -> Action:
        """Map the policy file's lower-case verb (block, warn, audit, alert, allow) to an Action."""
        return _POLICY_WORDS[word]

    @property
    def policy_word(self) -> str:
        """The lower-case verb used in policy files and on the command line."""
        return _ACTION_WORDS[self]

    @property
    def strength(self) -> int:
        """Rank used when two entries for the same name disagree: allow beats block beats warn."""
        return _STRENGTH[self]


_POLICY_WORDS = {
    "block": Action.BLOCK,
    "warn": Action.WARN,
    "audit": Action.AUDIT,
    "alert": Action.ALERT,
    "allow": Action.ALLOWED,
}
_ACTION_WORDS = {action: word for word, action in _POLICY_WORDS.items()}
_STRENGTH = {Action.ALLOWED: 5, Action.BLOCK: 4, Action.WARN: 3, Action.ALERT: 2, Action.AUDIT: 1}
POLICY_ACTIONS: tuple[str, ...] = tuple(_POLICY_WORDS)


class Severity(StrEnum):
    """Alert severity, as in the Defender Indicators API."""

    INFORMATIONAL = "Informational"
    LOW = "Low"
    MEDIUM = "Medium"
    HIGH = "High"

    @classmethod
    def parse(cls, word: str) -> Severity:
        """Accept any capitalisation of a severity name."""
        for member in cls:
            if member.value.lower() == word.lower():
                return member
        raise ValueError(word)


INDICATOR_TYPE_DOMAIN = "DomainName"
ALL_DEVICES = ""
"""Scope value of an indicator that applies to every device group."""

MANUAL = "manual"
POLICY = "policy"
"""Indicator sources: `policy` indicators are owned by reconciliation, `manual` ones never are."""


class Indicator(NamedTuple):
    """One domain indicator as the store and the endpoints see it.

    A NamedTuple rather than a dataclass: a plan over a million indicators builds and compares
    a million of them, and tuples are created and compared in C.

    The fields follow the Defender for Endpoint Indicators API (indicatorValue, indicatorType,
    action, severity, title, description, expirationTime, generateAlert, rbacGroupNames), with a
    single device-group `scope` per row (`ALL_DEVICES` for every device). `app_id` names the
    catalog app the indicator came from, or is empty for a policy `allow` entry.
    """

    value: str
    action: Action
    severity: Severity = Severity.MEDIUM
    scope: str = ALL_DEVICES
    title: str = ""
    description: str = ""
    app_id: str = ""
    generate_alert: bool = False
    expiration: dt.datetime | None = None
    type: str = INDICATOR_TYPE_DOMAIN

    @property
    def key(self) -> tuple[str, str]:
        """Identity of an indicator: its scope and its value (a domain)."""
        return (self.scope, self.value)

    def canonical(self) -> str:
        """A stable one-line text of every compared field (used for digests)."""
        exp = self.expiration.strftime("%Y-%m-%dT%H:%M:%SZ") if self.expiration else ""
        # Action and Severity are StrEnums: joined as their values, without the slow `.value`.
        return "\x1f".join(
            (
                self.scope,
                self.value,
                self.type,
                self.action,
                self.severity,
                self.title,
                self.description,
                self.app_id,
                "1" if self.generate_alert else "0",
                exp,
            )
        )


class EventAction(StrEnum):
    """What happened to one network connection or DNS answer on an endpoint."""

    ALLOWED = "allowed"
    BLOCKED = "blocked"
    WARNED = "warned"
    BYPASSED = "bypassed"
    AUDITED = "audited"


@dataclass(frozen=True, slots=True)
class NetworkEvent:
    """One DNS answer or proxied connection seen by a shim front end.

    Front ends fill what they know (the domain, the verdict, the bytes); the event reporter adds
    the device context (device id, hostname, user, local IP) before spooling it.
    """

    time: dt.datetime
    source: str
    """Which front end saw it: "dns" or "proxy"."""
    domain: str
    action: EventAction
    indicator: str = ""
    app_id: str = ""
    dest_ip: str = ""
    dest_port: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    user: str = ""
    client_ip: str = ""
    client_port: int = 0
    """Source port of the client's socket: with `client_ip`, how its process is found."""
    pid: int = 0
    """The process that made the connection or query (0: not known, e.g. not intercepted)."""
    process_name: str = ""
    process_path: str = ""


def normalize(name: str) -> str:
    """A domain name in the one form every layer compares: lower-case, without one trailing dot,
    an internationalised name in its ASCII (punycode) form.

    Raises ValueError for a name that cannot be a DNS name (empty labels, bad IDN).
    """
    name = name.strip().rstrip(".").lower()
    if not name.isascii():
        name = name.encode("idna").decode("ascii")
    if not name or ".." in name or name.startswith("."):
        raise ValueError(f"not a domain name: {name!r}")
    return name


_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def normalize_host(name: str) -> str | None:
    """A host name as a client sent it (TLS SNI, a Host header, a CONNECT target) in the form
    the matcher compares, or None when it cannot name a host.

    Forgives what resolvers and servers forgive: empty labels (``www..mega.nz``, ``.mega.nz``)
    are dropped, so such a name is decided like the name it reaches. An IP literal is returned
    as written. Anything else that is not letters, digits, ``-``, ``_`` and dots once
    normalised (a bad IDN, control or space characters, a label over 63 octets, a name over
    253) is None: the proxy denies it rather than calling it "not governed".
    """
    try:
        host = normalize(name)
    except ValueError:
        labels = [label for label in name.strip().lower().split(".") if label]
        try:
            host = normalize(".".join(labels)) if labels else ""
        except ValueError:  # UnicodeError is one
            return None
    if not host:
        return None
    if host.startswith("[") or ":" in host or host.replace(".", "").isdigit():
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return None
        return host
    if (
        len(host) > 253
        or not _HOST_CHARS.issuperset(host)
        or any(len(label) > 63 for label in host.split("."))
    ):
        return None
    return host
