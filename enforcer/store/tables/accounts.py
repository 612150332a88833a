"""SQLModel tables of console/API accounts and of the audit log. Migration 0015 creates them.

An account is a named bearer token with a role (``admin`` changes, ``analyst`` reads and
exports); only the token's SHA-256 is stored. The audit log records every change people and the
daemon make (who, when, what), written in the transaction of the change it records.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

from enforcer.store.tables.indicators import BigId, utcnow

ACCOUNT_NAME_MAX = 64
ACTOR_MAX = 256
"""An actor: an account name, an OS user, ``daemon`` or a git author ``Name <email>``."""
TARGET_MAX = 512


class AccountRow(SQLModel, table=True):
    """A named console/API account; its token is stored hashed only."""

    __tablename__ = "account"

    name: str = Field(primary_key=True, max_length=ACCOUNT_NAME_MAX)
    role: str = Field(max_length=16)
    """``admin`` or ``analyst``."""
    token_hash: str = Field(max_length=64, unique=True)
    created_at: dt.datetime = Field(default_factory=utcnow)
    disabled_at: dt.datetime | None = None


class AuditRow(SQLModel, table=True):
    """One change: when, who (the actor), what (action and target) and its details (JSON)."""

    __tablename__ = "audit"
    __table_args__ = (
        Index("ix_audit_time", "time"),
        Index("ix_audit_actor", "actor"),
        Index("ix_audit_action", "action"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True)
    )
    time: dt.datetime
    actor: str = Field(max_length=ACTOR_MAX)
    action: str = Field(max_length=64)
    target: str = Field(default="", max_length=TARGET_MAX)
    details: str = Field(default="{}", sa_column=Column(Text, nullable=False))


ACCOUNT = AccountRow.__table__  # type: ignore[attr-defined]
AUDIT = AuditRow.__table__  # type: ignore[attr-defined]
