"""SQLModel table of console sessions that were signed out.

A console session is a signed cookie (`enforcer.console.session`); signing out ends it on the
server too by recording its id here until the cookie would have expired anyway, so a copy of
the cookie stops working. Migration 0012 creates it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index
from sqlmodel import Field, SQLModel


class ConsoleSessionEndedRow(SQLModel, table=True):
    """A console session id that was signed out, kept until its cookie's own expiry."""

    __tablename__ = "console_session_ended"
    __table_args__ = (Index("ix_console_session_ended_expires_at", "expires_at"),)

    sid: str = Field(primary_key=True, max_length=64)
    expires_at: dt.datetime


SESSION_ENDED = ConsoleSessionEndedRow.__table__  # type: ignore[attr-defined]
