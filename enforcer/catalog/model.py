"""The catalog's records: a cloud `App` and the fixed set of `CATEGORIES` (the app's
`RiskAttributes` are in `enforcer.catalog.risk`, with the score computed from them).

These are plain validated data (pydantic, frozen). Validation normalizes what people write by
hand in YAML, so that every consumer can compare values directly: a domain is lower-case, has no
trailing dot and is in its ASCII (punycode) form; a country code is upper-case.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from enforcer.catalog.risk import RiskAttributes, risk_score
from enforcer.models import normalize
from enforcer.wire.limits import DOMAIN_MAX

CATEGORIES: tuple[str, ...] = (
    "adult",
    "advertising",
    "business",
    "cloud-infrastructure",
    "cloud-storage",
    "code-hosting",
    "collaboration",
    "crm",
    "cryptocurrency",
    "dev-tools",
    "dns-over-https",
    "education",
    "email",
    "file-sharing",
    "finance",
    "gambling",
    "gaming",
    "generative-ai",
    "media-streaming",
    "messaging",
    "news-media",
    "paste",
    "password-manager",
    "productivity",
    "reference",
    "remote-access",
    "security",
    "shopping",
    "social-media",
    "software-downloads",
    "travel",
    "tunneling",
    "url-shortener",
    "video-conferencing",
    "vpn-proxy",
)
"""Every category an app may have: one slug per kind of service an organisation governs."""

APP_ID_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_CANONICAL = re.compile(
    r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)+[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
)
"""A name already in the canonical form (what `normalize_domain` would return unchanged)."""


def normalize_domain(value: str) -> str:
    """Return `value` as a canonical domain name, or raise ValueError naming it.

    Canonical means lower-case, without a trailing dot, punycode for an internationalised name,
    at least two labels and only letters, digits, hyphens (and underscores, which real service
    names such as ``_dmarc`` use) in each label of at most 63 characters.
    """
    if len(value) <= DOMAIN_MAX and _CANONICAL.fullmatch(value):
        return value  # the catalog's names mostly are: one regex instead of the checks below
    try:
        domain = normalize(value)
    except (ValueError, UnicodeError):
        raise ValueError(f"{value!r} is not a valid domain name") from None
    labels = domain.split(".")
    if len(labels) < 2:
        raise ValueError(f"{value!r} is not a valid domain name: it needs at least one dot")
    if len(domain) > DOMAIN_MAX or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"{value!r} is not a valid domain name")
    return domain


def _unique_domains(domains: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    for domain in domains:
        if domain in seen:
            raise ValueError(f"domain {domain!r} is listed twice")
        seen.add(domain)
    return domains


Domain = Annotated[str, AfterValidator(normalize_domain)]


class App(BaseModel):
    """One cloud app: who makes it, what kind it is, which domains serve it and how risky it is.

    A domain covers itself and every name below it: ``dropbox.com`` covers ``www.dropbox.com``.
    Bundled apps come from ``enforcer/catalog/data/*.yaml``; organisations add their own apps
    (`custom` is True for those) in their policy repository.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=APP_ID_PATTERN, max_length=64)
    """Stable slug; policies refer to apps by it, so it never changes once published."""
    name: str = Field(min_length=1)
    vendor: str = Field(min_length=1)
    category: str
    domains: Annotated[tuple[Domain, ...], AfterValidator(_unique_domains)] = Field(min_length=1)
    description: str = ""
    website: str = ""
    # Factories, not shared default values: pydantic deep-copies a mutable default for every app.
    risk: RiskAttributes = Field(default_factory=RiskAttributes)
    shared: dict[Domain, str] = Field(default_factory=dict)
    """Domains of this app that another app lists too, each with the reason (Jira and
    Confluence sites both live on ``atlassian.net``); any other shared domain is an error of
    the bundled data (the test suite checks it)."""
    custom: bool = False

    @model_validator(mode="after")
    def _shared_domains_are_listed(self) -> App:
        for domain in self.shared:
            if domain not in self.domains:
                raise ValueError(f"shared: {domain!r} is not one of the app's domains")
        return self

    @field_validator("category")
    @classmethod
    def _known_category(cls, value: str) -> str:
        if value not in CATEGORIES:
            raise ValueError(f"{value!r} is not one of {', '.join(CATEGORIES)}")
        return value

    @property
    def score(self) -> float:
        """Risk score from 0 (lowest) to 10 (highest), one decimal; see `risk_score`."""
        return risk_score(self.risk)
