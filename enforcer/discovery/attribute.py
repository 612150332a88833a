"""Which app a host belongs to: the catalog's domains through the shared matcher.

A host that no app claims is *unrecognised* and is reported under its registrable domain
(``files.example.co.uk`` -> ``example.co.uk``, by the Public Suffix List bundled with the
`publicsuffixlist` package), so an admin can create a custom app from it.
"""

from __future__ import annotations

import ipaddress

from publicsuffixlist import PublicSuffixList

from enforcer.catalog import Catalog
from enforcer.decide.matcher import MatchEntry, Matcher
from enforcer.discovery.records import APP_HOST
from enforcer.models import Action, normalize
from enforcer.wire.limits import DOMAIN_MAX

_PSL: PublicSuffixList | None = None


def registrable_domain(host: str) -> str:
    """The registrable domain of a host (itself when the suffix list has no answer)."""
    global _PSL
    if _PSL is None:
        _PSL = PublicSuffixList()
    return _PSL.privatesuffix(host) or host


class Attributor:
    """host -> (app_id, domain): app_id for catalog apps (domain ""), else ("", registrable domain).

    Results are cached per host: logs repeat the same hosts over and over.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._matcher = Matcher(
            MatchEntry(domain, Action.AUDIT, app.id) for app in catalog for domain in app.domains
        )
        self._cache: dict[str, tuple[str, str]] = {}

    def __call__(self, host: str) -> tuple[str, str]:
        hit = self._cache.get(host)
        if hit is None:
            hit = self._cache[host] = self._attribute(host)
        return hit

    def _attribute(self, host: str) -> tuple[str, str]:
        if not host:
            return ("", "")
        if host.startswith(APP_HOST):  # a log that named the application, not a host
            app_id = host[len(APP_HOST) :]
            return (app_id, "") if app_id in self.catalog.apps else ("", NOT_A_SITE)
        try:
            name = normalize(host)
        except (ValueError, UnicodeError):
            return ("", host[:DOMAIN_MAX])
        verdict = self._matcher.verdict_normalized(name)
        if verdict.app_id:
            return (verdict.app_id, "")
        if _is_ip(name):
            return ("", name)
        if is_junk_domain(name):
            # Kept apart under one key (the reports count it and do not list it): its
            # registrable domain would hide what it was (``_ldap._tcp.corp.example``).
            return ("", NOT_A_SITE)
        return ("", registrable_domain(name))


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


NOT_A_SITE = "(not a site)"
"""The unrecognised-domain key of hosts that cannot be a cloud app (`is_junk_domain`)."""
_NOT_SITES = (".in-addr.arpa", ".ip6.arpa", ".local", ".localdomain", ".internal", ".home.arpa")


def is_junk_domain(name: str) -> bool:
    """Whether an unrecognised "domain" cannot be a cloud app: a wildcard, a reverse lookup
    (``in-addr.arpa``, ``ip6.arpa``), a local name (``.local``, ``.internal``, ``home.arpa``), a
    single label, or a service name (``_ldap._tcp...``). Reports count such names and do not
    list them as custom-app candidates."""
    name = name.lower().rstrip(".")
    if not name or "*" in name or "." not in name or name.startswith("_") or "._" in name:
        return True
    return name.endswith(_NOT_SITES) or name in {s.lstrip(".") for s in _NOT_SITES}
