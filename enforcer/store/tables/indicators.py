"""SQLModel tables of the indicator store. Alembic migrations in `migrations/` create them.

Times are timezone-aware UTC in Python; SQLModel stores them as UTC on both back ends.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Column, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from enforcer.wire.limits import APP_ID_MAX, DESCRIPTION_MAX, DOMAIN_MAX, TITLE_MAX


def utcnow() -> dt.datetime:
    """Aware UTC now."""
    return dt.datetime.now(dt.UTC)


# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class IndicatorBase(SQLModel):
    """Fields of an indicator (Defender Indicators API shape, one device-group scope per row)."""

    value: str = Field(max_length=DOMAIN_MAX)
    type: str = Field(default="DomainName", max_length=32)
    action: str = Field(max_length=16)
    severity: str = Field(default="Medium", max_length=16)
    scope: str = Field(default="", max_length=64)
    title: str = Field(default="", max_length=TITLE_MAX)
    description: str = Field(default="", max_length=DESCRIPTION_MAX)
    app_id: str = Field(default="", max_length=APP_ID_MAX)
    generate_alert: bool = False
    expiration_time: dt.datetime | None = None


class IndicatorRow(IndicatorBase, table=True):
    """A stored indicator. `source` is ``policy`` (owned by reconcile) or ``manual`` (never touched)."""

    __tablename__ = "indicator"
    # Few indexes on purpose: each one costs on a million-row apply. The unique key leads with
    # the value so that it also serves `explain` and the API's lookups by domain. The expiry
    # index is partial (`WHERE expiration_time IS NOT NULL`: almost no indicator expires) on both
    # back ends; migration 0001 creates it so and tests/test_migrations.py checks it. The
    # predicate is not declared here because a `postgresql_where` loads SQLAlchemy's PostgreSQL
    # dialect in every process that imports this table, SQLite CLI commands included (`explain`
    # spent a tenth of its time on it); the schema comes from the migrations only.
    __table_args__ = (
        UniqueConstraint("value", "scope", "source", name="uq_indicator_value_scope_source"),
        Index("ix_indicator_source_bucket", "source", "bucket"),
        Index("ix_indicator_expiration", "expiration_time"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=16)
    bucket: int = -1
    """Digest bucket of a policy indicator (-1 for manual ones)."""
    created_by: str = Field(default="", max_length=128)
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)


class RevisionRow(SQLModel, table=True):
    """One applied change set; the number only grows (the endpoints' delta-sync cursor)."""

    __tablename__ = "revision"

    id: int = Field(primary_key=True)
    created_at: dt.datetime = Field(default_factory=utcnow)
    kind: str = Field(max_length=16)
    """``policy`` (an applied plan), ``manual`` (an indicator added or removed by hand) or ``expiry``."""
    created: int = 0
    updated: int = 0
    deleted: int = 0
    policy_digest: str = Field(default="", max_length=64)
    actor: str = Field(default="", max_length=128)


class ChangeLogRow(SQLModel, table=True):
    """Append-only log of indicator changes per revision, read by delta sync."""

    __tablename__ = "change_log"
    __table_args__ = (Index("ix_change_log_revision", "revision"),)

    id: int | None = Field(
        default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True)
    )
    revision: int
    op: str = Field(max_length=8)
    """``upsert`` (create or update: the row holds the new state) or ``remove``."""
    source: str = Field(max_length=16)
    scope: str = Field(max_length=64)
    value: str = Field(max_length=DOMAIN_MAX)
    action: str = Field(default="", max_length=16)
    severity: str = Field(default="", max_length=16)
    app_id: str = Field(default="", max_length=APP_ID_MAX)
    generate_alert: bool = False


class BucketDigestRow(SQLModel, table=True):
    """Digest of one bucket of policy indicators (see `enforcer.plan.model`)."""

    __tablename__ = "bucket_digest"

    bucket: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    digest: int = Field(sa_column=Column(BigInteger, nullable=False))
    count: int


class AppRow(SQLModel, table=True):
    """A governed app as last applied (for reports and the console)."""

    __tablename__ = "app"

    id: str = Field(primary_key=True, max_length=128)
    name: str = Field(max_length=256)
    category: str = Field(max_length=64)
    risk: float


class AppTagRow(SQLModel, table=True):
    """An app's tag in one scope, and the policy line that set it."""

    __tablename__ = "app_tag"

    app_id: str = Field(primary_key=True, max_length=APP_ID_MAX)
    scope: str = Field(primary_key=True, max_length=64)
    tag: str = Field(max_length=16)
    origin: str = Field(default="", max_length=512)


class AppCustomTagRow(SQLModel, table=True):
    """One custom tag (``approved-for-finance``) of an app, as last applied."""

    __tablename__ = "app_custom_tag"

    app_id: str = Field(primary_key=True, max_length=APP_ID_MAX)
    tag: str = Field(primary_key=True, max_length=64, index=True)


class AppReviewRow(SQLModel, table=True):
    """An app under review, as last applied: who decides, by when, and about what."""

    __tablename__ = "app_review"

    app_id: str = Field(primary_key=True, max_length=APP_ID_MAX)
    owner: str = Field(max_length=128)
    due: dt.date
    note: str = Field(default="", max_length=2000)
    tag: str = Field(max_length=16)
    """``in-review``, or the sanction in force while the app is reconsidered."""
    origin: str = Field(default="", max_length=512)


class DeviceGroupRow(SQLModel, table=True):
    """A device group declared in policy."""

    __tablename__ = "device_group"

    name: str = Field(primary_key=True, max_length=64)
    description: str = Field(default="", max_length=512)


class StoreMetaRow(SQLModel, table=True):
    """Small key/value facts: the current revision (also the apply lock row)."""

    __tablename__ = "store_meta"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=256)


# Core handles of the tables, for the store's statements (the bulk paths avoid ORM objects).
IND = IndicatorRow.__table__  # type: ignore[attr-defined]
LOG = ChangeLogRow.__table__  # type: ignore[attr-defined]
DIGEST = BucketDigestRow.__table__  # type: ignore[attr-defined]
META = StoreMetaRow.__table__  # type: ignore[attr-defined]
REV = RevisionRow.__table__  # type: ignore[attr-defined]
APP = AppRow.__table__  # type: ignore[attr-defined]
TAG = AppTagRow.__table__  # type: ignore[attr-defined]
GROUP = DeviceGroupRow.__table__  # type: ignore[attr-defined]
CUSTOM_TAG = AppCustomTagRow.__table__  # type: ignore[attr-defined]
REVIEW = AppReviewRow.__table__  # type: ignore[attr-defined]
