"""Console/API accounts: a name, a role and a bearer token (stored as its SHA-256 only).

Roles: ``admin`` may change (apply policy, add indicators, acknowledge alerts, assign device
groups); ``analyst`` reads and exports. The server's ``ENFORCER_ADMIN_TOKEN`` is the built-in
account ``admin`` (role admin; it is not stored, and the name cannot be taken). Each change of
an account (added, disabled, a new token) writes its audit row in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from enforcer.errors import PermanentError
from enforcer.store.audit import record_change
from enforcer.store.devices import hash_token
from enforcer.store.tables.accounts import ACCOUNT
from enforcer.store.tables.indicators import utcnow


class Role(StrEnum):
    """What an account may do."""

    ADMIN = "admin"
    """Read, export and change."""
    ANALYST = "analyst"
    """Read and export only."""


BUILTIN_NAME = "admin"
"""The account of ``ENFORCER_ADMIN_TOKEN``."""
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")


class AccountError(PermanentError):
    """An account command that cannot be done (an unknown, taken or disabled name)."""


@dataclass(frozen=True)
class Account:
    """An account as the API and the console see the caller."""

    name: str
    role: Role
    created_at: dt.datetime | None = None
    disabled_at: dt.datetime | None = None
    token_mark: str = ""
    """The start of the token's hash: a console session remembers it, so a new token ends the
    account's sessions (the built-in account's sessions end with a new admin token instead)."""

    @property
    def builtin(self) -> bool:
        return self.name == BUILTIN_NAME

    @property
    def can_change(self) -> bool:
        return self.role is Role.ADMIN and self.disabled_at is None


BUILTIN = Account(BUILTIN_NAME, Role.ADMIN)
"""The built-in admin account (``ENFORCER_ADMIN_TOKEN``)."""


def check_name(name: str) -> str:
    """`name` if it can name an account; AccountError saying why not."""
    if not NAME_PATTERN.fullmatch(name):
        raise AccountError(
            f"{name!r} is not an account name: 1-64 lower-case letters, digits, '.', '_', '@' "
            "or '-', starting with a letter or digit"
        )
    if name == BUILTIN_NAME:
        raise AccountError(
            f"{BUILTIN_NAME!r} is the built-in account of ENFORCER_ADMIN_TOKEN; choose another name"
        )
    return name


def new_token() -> str:
    """A fresh random bearer token (256 bits)."""
    return secrets.token_urlsafe(32)


def _account(row: Row[tuple[object, ...]]) -> Account:
    return Account(
        name=str(row.name),
        role=Role(row.role),
        created_at=_aware(row.created_at),
        disabled_at=_aware(row.disabled_at),
        token_mark=str(row.token_hash)[:16],
    )


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def add_account(engine: Engine, name: str, role: Role, *, actor: str) -> tuple[Account, str]:
    """Create an account; returns it and its token (shown once: only its hash is kept)."""
    check_name(name)
    token = new_token()
    now = utcnow()
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(ACCOUNT).values(
                    name=name, role=role.value, token_hash=hash_token(token), created_at=now
                )
            )
            record_change(
                conn, actor=actor, action="account.add", target=name, details={"role": role.value}
            )
    except IntegrityError:
        raise AccountError(f"an account named {name!r} exists already") from None
    return Account(name, role, now, None, hash_token(token)[:16]), token


def list_accounts(conn: Connection) -> list[Account]:
    """Every stored account by name (the built-in ``admin`` is not stored)."""
    return [_account(r) for r in conn.execute(select(ACCOUNT).order_by(ACCOUNT.c.name))]


def find_account(conn: Connection, name: str) -> Account | None:
    """The stored account named `name`, disabled or not."""
    row = conn.execute(select(ACCOUNT).where(ACCOUNT.c.name == name)).first()
    return _account(row) if row is not None else None


def account_for_token(conn: Connection, token: str) -> Account | None:
    """The stored account whose token is `token`, disabled or not."""
    row = conn.execute(select(ACCOUNT).where(ACCOUNT.c.token_hash == hash_token(token))).first()
    return _account(row) if row is not None else None


def disable_account(engine: Engine, name: str, *, actor: str) -> Account:
    """Disable an account: its token and its console sessions stop working at once."""
    with engine.begin() as conn:
        found = _enabled(conn, name)
        now = utcnow()
        conn.execute(update(ACCOUNT).where(ACCOUNT.c.name == name).values(disabled_at=now))
        record_change(
            conn, actor=actor, action="account.disable", target=name,
            details={"role": found.role.value},
        )  # fmt: skip
    return Account(found.name, found.role, found.created_at, now, found.token_mark)


def rotate_token(engine: Engine, name: str, *, actor: str) -> str:
    """Give an account a new token (returned, shown once); the old one and the account's
    console sessions stop working at once."""
    token = new_token()
    with engine.begin() as conn:
        found = _enabled(conn, name)
        conn.execute(
            update(ACCOUNT).where(ACCOUNT.c.name == name).values(token_hash=hash_token(token))
        )
        record_change(
            conn, actor=actor, action="account.rotate", target=name,
            details={"role": found.role.value},
        )  # fmt: skip
    return token


def _enabled(conn: Connection, name: str) -> Account:
    if name == BUILTIN_NAME:
        raise AccountError(
            f"{BUILTIN_NAME!r} is the built-in account: change ENFORCER_ADMIN_TOKEN to replace its "
            "token"
        )
    found = find_account(conn, name)
    if found is None:
        raise AccountError(f"no account named {name!r} (enforcer accounts list)")
    if found.disabled_at is not None:
        raise AccountError(f"the account {name!r} is disabled")
    return found


__all__ = [
    "BUILTIN",
    "Account",
    "AccountError",
    "Role",
    "account_for_token",
    "add_account",
    "check_name",
    "disable_account",
    "find_account",
    "list_accounts",
    "rotate_token",
]
