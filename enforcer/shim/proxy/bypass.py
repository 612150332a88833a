"""Per-user bypasses of `warn` indicators: who chose to continue to which app, until when.

When a user clicks "Continue" on a warning page, the proxy records a bypass for (user, app) that
lets the app through for a limited time (24 hours by default), like the commercial product's
warn-and-bypass. The store survives restarts of the shim (the user should not be warned again
because the service restarted): it is a small JSON file in the shim's state directory, rewritten
atomically on every change. Bypasses are rare, so simplicity beats write performance here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_TTL = dt.timedelta(hours=24)
_FORMAT_VERSION = 1


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class BypassStore:
    """Bypass expiries by (user, app key), optionally persisted to `path`.

    The app key is the catalog app id of the warn indicator, or the indicator itself when it
    belongs to no app: a bypass covers every domain of the app, as the warning page says.
    """

    def __init__(self, path: Path | None = None, *, ttl: dt.timedelta = DEFAULT_TTL) -> None:
        if ttl <= dt.timedelta(0):
            raise ValueError("bypass ttl must be positive")
        self.path = path
        self.ttl = ttl
        self._expiries: dict[tuple[str, str], dt.datetime] = {}
        if path is not None:
            self._load(path)

    def grant(self, user: str, app: str, now: dt.datetime | None = None) -> dt.datetime:
        """Record a bypass from `now` for the configured ttl and return when it expires."""
        now = now or _utcnow()
        expires = now + self.ttl
        self._expiries[(user, app)] = expires
        self._prune(now)
        self._save()
        return expires

    def is_bypassed(self, user: str, app: str, now: dt.datetime | None = None) -> bool:
        """Whether `user` has a bypass for `app` that has not expired at `now`."""
        expires = self._expiries.get((user, app))
        return expires is not None and (now or _utcnow()) < expires

    def revoke(self, user: str, app: str) -> None:
        """Forget a bypass (no error if there is none)."""
        if self._expiries.pop((user, app), None) is not None:
            self._save()

    def active(self, now: dt.datetime | None = None) -> dict[tuple[str, str], dt.datetime]:
        """The bypasses still valid at `now`, by (user, app)."""
        now = now or _utcnow()
        return {key: exp for key, exp in self._expiries.items() if now < exp}

    def _prune(self, now: dt.datetime) -> None:
        self._expiries = self.active(now)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != _FORMAT_VERSION:
                raise ValueError(f"unknown format version {data.get('version')!r}")
            for row in data["bypasses"]:
                expires = dt.datetime.fromisoformat(row["expires"])
                if expires.tzinfo is None:
                    raise ValueError("expiry without a time zone")
                self._expiries[(str(row["user"]), str(row["app"]))] = expires
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # A damaged file must not stop enforcement: users are warned again, which is safe.
            log.warning("ignoring unreadable bypass file %s: %s", path, exc)
            self._expiries.clear()

    def _save(self) -> None:
        if self.path is None:
            return
        rows = [
            {"user": user, "app": app, "expires": expires.isoformat()}
            for (user, app), expires in sorted(self._expiries.items())
        ]
        text = json.dumps({"version": _FORMAT_VERSION, "bypasses": rows}, indent=1)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".bypasses-", dir=self.path.parent)
        except OSError as exc:
            # The bypass still holds in memory; only a restart would forget it.
            log.error("cannot write bypass file %s: %s", self.path, exc)
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            log.error("cannot write bypass file %s: %s", self.path, exc)
