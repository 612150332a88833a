"""One person, one user: the user name every discovery report shows for a name a log carried.

Logs name the same person several ways: a proxy's ``alice``, a firewall's ``CONTOSO\\alice``, an
identity provider's ``alice@contoso.com``. By default they are one user, ``alice`` (lower case,
the domain dropped); with ``ENFORCER_DISCOVERY_USER_DOMAINS=true`` the domain is kept
(``alice@contoso.com``, and ``CONTOSO\\alice`` becomes ``alice@contoso``) so that people of two
domains with the same account name stay apart. A mapping file (``ENFORCER_DISCOVERY_USER_MAP``)
joins names that differ altogether, one ``FORM = USER`` per line::

    # a.smith is alice's old account; asmith@fabrikam.com her account at the merged company
    a.smith = alice
    asmith@fabrikam.com = alice

Both sides are normalised by the same rules first, so ``FABRIKAM\\asmith`` matches the second
line too when domains are dropped.

Names are normalised when a batch is rolled up (`enforcer.discovery.aggregate`), not per log
line: a million-line upload has a few thousand distinct (device, user) keys, so the cost does not
show in the ingest benchmark. The raw forms behind each user are kept (`discovery_user_form`) and
listed on the user's page. A changed mapping applies to data rolled up after the change.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from enforcer.config import Settings
from enforcer.errors import EnforcerError


class UserMapError(EnforcerError):
    """A mapping file that cannot be read: names the file and line."""

    def __init__(self, file: str, line: int, message: str) -> None:
        self.file, self.line, self.message = file, line, message
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")


def normalize_user(raw: str, *, keep_domains: bool = False) -> str:
    """The user a raw name stands for, by the rules alone (no mapping file): lower case,
    surrounding space removed; ``DOMAIN\\name`` and ``name@domain`` lose the domain unless
    `keep_domains`, which writes the first as ``name@domain``."""
    name = raw.strip().lower()
    if "\\" in name:
        domain, _, account = name.rpartition("\\")
        name = f"{account}@{domain}" if keep_domains and domain and account else account or name
    elif not keep_domains and "@" in name:
        account = name.partition("@")[0]
        name = account or name
    return name


class UserNames:
    """Raw user name -> the user reports show (the rules, then the mapping), cached."""

    def __init__(
        self, *, keep_domains: bool = False, aliases: Mapping[str, str] | None = None
    ) -> None:
        self.keep_domains = keep_domains
        self.aliases = {
            normalize_user(form, keep_domains=keep_domains): normalize_user(
                user, keep_domains=keep_domains
            )
            for form, user in (aliases or {}).items()
        }
        self._cache: dict[str, str] = {}

    def __call__(self, raw: str) -> str:
        hit = self._cache.get(raw)
        if hit is None:
            name = normalize_user(raw, keep_domains=self.keep_domains)
            hit = self.aliases.get(name, name)
            if len(self._cache) < 100_000:
                self._cache[raw] = hit
        return hit


def read_user_map(path: Path) -> dict[str, str]:
    """The ``FORM = USER`` lines of a mapping file (``#`` starts a comment)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserMapError(str(path), 0, f"cannot read the user mapping file: {exc}") from exc
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        form, sep, user = (part.strip() for part in line.partition("="))
        if not sep or not form or not user:
            raise UserMapError(str(path), number, f"expected 'FORM = USER', got {line[:80]!r}")
        out[form] = user
    return out


_lock = threading.Lock()
_loaded: dict[tuple[bool, str, float], UserNames] = {}


def load_user_names(settings: Settings) -> UserNames:
    """The `UserNames` of the settings (the mapping file re-read when it changes)."""
    path = settings.discovery_user_map
    mtime = 0.0
    if path is not None:
        try:
            mtime = path.stat().st_mtime
        except OSError as exc:
            raise UserMapError(str(path), 0, f"cannot read the user mapping file: {exc}") from exc
    key = (settings.discovery_user_domains, str(path or ""), mtime)
    with _lock:
        names = _loaded.get(key)
        if names is None:
            aliases = read_user_map(path) if path is not None else {}
            _loaded.clear()
            names = _loaded[key] = UserNames(
                keep_domains=settings.discovery_user_domains, aliases=aliases
            )
        return names
