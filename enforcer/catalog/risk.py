"""A cloud app's risk: the public facts about it (`RiskAttributes`) and the score computed from
them, 0 (lowest risk) to 10 (highest).

The score is a sum of weighted factors, one per attribute of `RiskAttributes`. A factor adds
its full weight when the fact is risky, nothing when it is reassuring, and half its weight when
the fact is unknown (None): a vendor that does not say whether it supports MFA is treated as
partly risky, neither as safe nor as the worst case. The weights sum to exactly 10, so an app
with every risky fact scores 10.0, one with every reassuring fact 0.0, and one about which
nothing is known 5.0.

========================  ======  =============================================================
Factor                    Weight  Risky when
========================  ======  =============================================================
recent breach             2.0     ``recent_breach`` is true (publicly reported, last 3 years)
no MFA                    1.5     ``mfa`` is false
no security audit         1.5     neither ``soc2`` nor ``iso27001`` is true, and both are false;
                                  unknown when neither is true and one is unknown
no encryption at rest     1.0     ``encryption_at_rest`` is false
no enterprise SSO         1.0     ``sso`` is false
no GDPR commitment        1.0     ``gdpr`` is false
jurisdiction              1.0     ``hq_country`` is outside the EEA and has no EU adequacy
                                  decision (`ADEQUATE_COUNTRIES`)
anonymous use             0.5     ``anonymous_use`` is true
young vendor              0.5     ``founded`` is within 3 years of `REFERENCE_YEAR`
========================  ======  =============================================================

The total is rounded half up to one decimal. `explain_risk` lists the factors that added
points, so that every score can be explained; its points add up to the score.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

REFERENCE_YEAR = 2026
"""The year the bundled facts were last reviewed; "young vendor" is measured from it."""
YOUNG_VENDOR_YEARS = 3

# The European Economic Area: the GDPR applies there directly.
# fmt: off
EEA_COUNTRIES = frozenset({
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE",
    "IS", "IT", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
})
# fmt: on
ADEQUATE_COUNTRIES = EEA_COUNTRIES | frozenset(
    {"AD", "AR", "CA", "CH", "FO", "GB", "GG", "IL", "IM", "JE", "JP", "KR", "NZ", "US", "UY"}
)
"""EEA countries plus those with an EU adequacy decision (the US through the EU-US Data Privacy
Framework), to which personal data may flow without extra safeguards."""


_COUNTRY = re.compile(r"^[A-Z]{2}$")

FACT_NAMES: tuple[str, ...] = (
    "founded",
    "hq_country",
    "encryption_at_rest",
    "mfa",
    "sso",
    "soc2",
    "iso27001",
    "gdpr",
    "recent_breach",
    "anonymous_use",
)
"""The facts of `RiskAttributes` the score is computed from."""


class RiskAttributes(BaseModel):
    """Public facts about an app's vendor and service, from which its risk score is computed.

    Every field is optional: None means "not known", which the score counts as partly risky (see
    `enforcer.catalog.risk`). Facts come from the vendor's own site and trust pages, and from
    breach reporting in the press.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    founded: int | None = Field(default=None, ge=1800, le=2100)
    """Year the service (or, for a suite, its vendor) was founded."""
    hq_country: str | None = None
    """ISO 3166-1 alpha-2 code of the country of the vendor's headquarters."""
    encryption_at_rest: bool | None = None
    """Customer data is encrypted at rest by the service."""
    mfa: bool | None = None
    """Accounts can be protected with multi-factor authentication."""
    sso: bool | None = None
    """Organisations can sign their users in with enterprise SSO (SAML or OpenID Connect)."""
    soc2: bool | None = None
    """The vendor holds a current SOC 2 (Type II) report for the service."""
    iso27001: bool | None = None
    """The vendor holds a current ISO/IEC 27001 certificate for the service."""
    gdpr: bool | None = None
    """The vendor publishes a GDPR commitment (a data processing agreement for customers)."""
    recent_breach: bool | None = None
    """A breach of the service was publicly reported within the last three years."""
    anonymous_use: bool | None = None
    """The service can be used without an account, so use leaves no identity with the vendor."""
    sources: dict[str, str] = Field(default_factory=dict)
    """Where a fact comes from, by fact name (a URL or a citation): each fact of a generated or
    newly reviewed app is stated only with its public source."""

    @model_validator(mode="after")
    def _sources_name_known_facts(self) -> RiskAttributes:
        for name in self.sources:
            if name not in FACT_NAMES:
                raise ValueError(f"sources: {name!r} is not a fact ({', '.join(FACT_NAMES)})")
            if getattr(self, name) is None:
                raise ValueError(f"sources: {name!r} has a source but no value")
        return self

    @property
    def known(self) -> int:
        """How many of the `FACT_NAMES` facts are known (not None)."""
        return sum(getattr(self, name) is not None for name in FACT_NAMES)

    @field_validator("hq_country")
    @classmethod
    def _country_code(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().upper()
        if not _COUNTRY.match(code):
            raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
        return code


class Rated(Protocol):
    """Anything with risk attributes: a catalog `App`."""

    @property
    def risk(self) -> RiskAttributes: ...


class RiskFactor(NamedTuple):
    """One factor's contribution to a score: why, and how many points (0 when reassuring)."""

    reason: str
    points: float


def _flag(value: bool | None, risky: bool, weight: float, reason: str, unknown: str) -> RiskFactor:
    if value is None:
        return RiskFactor(unknown, weight / 2)
    return RiskFactor(reason, weight if value is risky else 0.0)


def _breach(a: RiskAttributes) -> RiskFactor:
    return _flag(
        a.recent_breach,
        True,
        2.0,
        "breach reported in the last 3 years",
        "breach history unknown",
    )


def _mfa(a: RiskAttributes) -> RiskFactor:
    return _flag(a.mfa, False, 1.5, "no MFA support", "MFA support unknown")


def _audit(a: RiskAttributes) -> RiskFactor:
    certificates = (a.soc2, a.iso27001)
    if True in certificates:
        return RiskFactor("no SOC 2 or ISO 27001 audit", 0.0)
    if None in certificates:
        return RiskFactor("SOC 2 / ISO 27001 audit unknown", 0.75)
    return RiskFactor("no SOC 2 or ISO 27001 audit", 1.5)


def _encryption(a: RiskAttributes) -> RiskFactor:
    return _flag(
        a.encryption_at_rest, False, 1.0, "no encryption at rest", "encryption at rest unknown"
    )


def _sso(a: RiskAttributes) -> RiskFactor:
    return _flag(a.sso, False, 1.0, "no enterprise SSO", "enterprise SSO unknown")


def _gdpr(a: RiskAttributes) -> RiskFactor:
    return _flag(a.gdpr, False, 1.0, "no GDPR commitment", "GDPR commitment unknown")


def _jurisdiction(a: RiskAttributes) -> RiskFactor:
    if a.hq_country is None:
        return RiskFactor("headquarters country unknown", 0.5)
    risky = a.hq_country not in ADEQUATE_COUNTRIES
    reason = f"headquartered in {a.hq_country}, without EU adequacy decision"
    return RiskFactor(reason, 1.0 if risky else 0.0)


def _anonymous(a: RiskAttributes) -> RiskFactor:
    return _flag(
        a.anonymous_use,
        True,
        0.5,
        "usable anonymously, without an account",
        "anonymous use unknown",
    )


def _young(a: RiskAttributes) -> RiskFactor:
    if a.founded is None:
        return RiskFactor("founding year unknown", 0.25)
    risky = a.founded > REFERENCE_YEAR - YOUNG_VENDOR_YEARS
    return RiskFactor(f"young vendor, founded {a.founded}", 0.5 if risky else 0.0)


FACTORS: tuple[Callable[[RiskAttributes], RiskFactor], ...] = (
    _breach,
    _mfa,
    _audit,
    _encryption,
    _sso,
    _gdpr,
    _jurisdiction,
    _anonymous,
    _young,
)
"""Every factor of the score, in the order `explain_risk` reports them."""


def _attributes(subject: Rated | RiskAttributes) -> RiskAttributes:
    return subject if isinstance(subject, RiskAttributes) else subject.risk


def risk_factors(subject: Rated | RiskAttributes) -> list[RiskFactor]:
    """Every factor's contribution to the score of an app (or of bare attributes)."""
    attrs = _attributes(subject)
    return [factor(attrs) for factor in FACTORS]


def _round(total: float) -> float:
    # Points are multiples of 0.25, so the sum is exact in binary floating point; rounding half
    # up in hundredths keeps 2.25 -> 2.3 instead of Python's banker's rounding (2.2).
    hundredths = round(total * 100)
    return (hundredths + 5) // 10 / 10


def risk_score(subject: Rated | RiskAttributes) -> float:
    """Risk score from 0.0 (lowest risk) to 10.0 (highest), one decimal; see module docstring."""
    return _round(sum(factor.points for factor in risk_factors(subject)))


def _points(points: float) -> str:
    text = f"{points:.2f}"
    return text[:-1] if text.endswith("0") else text


def facts_known(subject: Rated | RiskAttributes) -> str:
    """How much a score rests on: ``"3 of 10 facts known"`` (unknown facts count half risky)."""
    return f"{_attributes(subject).known} of {len(FACT_NAMES)} facts known"


def explain_risk(subject: Rated | RiskAttributes) -> list[str]:
    """The reasons behind a score, one per factor that added points: ``"no MFA support: +1.5"``."""
    return [
        f"{factor.reason}: +{_points(factor.points)}"
        for factor in risk_factors(subject)
        if factor.points > 0
    ]
