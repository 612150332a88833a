"""SQLModel tables of Cloud Discovery: rollups of usage per day (and hour), and alerts.

Distinct counts (users, devices, IP addresses of an app over any range of days) must be exact and
fast over 30 days of 10,000 devices, so each daily row carries *bitsets* of the ordinals of the
devices, users and addresses seen that day (`discovery_entity` numbers them). A range query ORs
the day's bitsets and counts the bits: exact, and no per-device rows to scan. Migration 0003
creates these tables.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from enforcer.store.tables.indicators import BigId, utcnow
from enforcer.wire.limits import APP_ID_MAX, DEVICE_ID_MAX, DOMAIN_MAX, USER_MAX


class DiscoveryEntityRow(SQLModel, table=True):
    """A device, user or IP address seen in discovery data, numbered for the bitsets."""

    __tablename__ = "discovery_entity"
    __table_args__ = (UniqueConstraint("kind", "name", name="uq_discovery_entity_kind_name"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=8)
    """``device``, ``user`` or ``ip``."""
    name: str = Field(max_length=256)
    ordinal: int
    """Bit position within its kind (0, 1, 2, ... per kind)."""


class AppDailyRow(SQLModel, table=True):
    """Usage of one app (or one unrecognised domain, with `app_id` empty) on one day."""

    __tablename__ = "discovery_app_daily"

    day: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    """Days since 1970-01-01 (UTC)."""
    app_id: str = Field(primary_key=True, max_length=APP_ID_MAX)
    domain: str = Field(primary_key=True, max_length=DOMAIN_MAX)
    """Registrable domain of unrecognised traffic; empty for a catalog app."""
    report: int = Field(
        default=0,
        primary_key=True,
        sa_column_kwargs={"autoincrement": False, "server_default": "0"},
    )
    """The named report (`DiscoveryReportRow`) the usage belongs to."""
    transactions: int = Field(sa_column=Column(BigInteger, nullable=False))
    bytes_up: int = Field(sa_column=Column(BigInteger, nullable=False))
    bytes_down: int = Field(sa_column=Column(BigInteger, nullable=False))
    blocked: int = Field(sa_column=Column(BigInteger, nullable=False))
    first_seen: float = Field(sa_column=Column(Float, nullable=False))
    last_seen: float = Field(sa_column=Column(Float, nullable=False))
    devices: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    users: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    ips: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class DeviceDailyRow(SQLModel, table=True):
    """Usage of one device on one day, with the users and addresses seen on it."""

    __tablename__ = "discovery_device_daily"
    # Per-device reads (machine page, last user, risk) go by device then day.
    __table_args__ = (Index("ix_discovery_device_daily_device", "device", "day"),)

    day: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    device: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    """Ordinal of the device entity."""
    report: int = Field(
        default=0,
        primary_key=True,
        sa_column_kwargs={"autoincrement": False, "server_default": "0"},
    )
    """The named report (`DiscoveryReportRow`) the usage belongs to."""
    transactions: int = Field(sa_column=Column(BigInteger, nullable=False))
    bytes_up: int = Field(sa_column=Column(BigInteger, nullable=False))
    bytes_down: int = Field(sa_column=Column(BigInteger, nullable=False))
    blocked: int = Field(sa_column=Column(BigInteger, nullable=False))
    first_seen: float = Field(sa_column=Column(Float, nullable=False))
    last_seen: float = Field(sa_column=Column(Float, nullable=False))
    users: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    ips: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    last_user: int = Field(
        default=-1, sa_column=Column(Integer, nullable=False, server_default="-1")
    )
    """Ordinal of the user seen last that day, by time (-1: none, or rolled up before
    migration 0013)."""
    last_user_seen: float = Field(
        default=0.0, sa_column=Column(Float, nullable=False, server_default="0")
    )
    """When `last_user` was seen last that day (epoch seconds)."""


class DeviceAppDailyRow(SQLModel, table=True):
    """Usage of one app by one device on one day: the machine page and the risk baseline."""

    __tablename__ = "discovery_device_app_daily"
    __table_args__ = (Index("ix_discovery_device_app_daily_app", "app_id", "day"),)

    device: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    day: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    app_id: str = Field(primary_key=True, max_length=APP_ID_MAX)
    report: int = Field(
        default=0,
        primary_key=True,
        sa_column_kwargs={"autoincrement": False, "server_default": "0"},
    )
    """The named report (`DiscoveryReportRow`) the usage belongs to."""
    transactions: int = Field(sa_column=Column(BigInteger, nullable=False))
    bytes_up: int = Field(sa_column=Column(BigInteger, nullable=False))
    bytes_down: int = Field(sa_column=Column(BigInteger, nullable=False))
    blocked: int = Field(sa_column=Column(BigInteger, nullable=False))
    first_seen: float = Field(sa_column=Column(Float, nullable=False))
    last_seen: float = Field(sa_column=Column(Float, nullable=False))


class UserAppDailyRow(SQLModel, table=True):
    """What one user uploaded to one catalog app on one day (migration 0018): the baseline of
    the per-user upload-spike alert policy for logs, whose raw lines are not kept. Only days
    with an upload have a row (a missing day counts as 0)."""

    __tablename__ = "discovery_user_app_daily"

    user: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    day: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    app_id: str = Field(primary_key=True, max_length=APP_ID_MAX)
    report: int = Field(
        default=0,
        primary_key=True,
        sa_column_kwargs={"autoincrement": False, "server_default": "0"},
    )
    """The named report (`DiscoveryReportRow`) the upload belongs to."""
    bytes_up: int = Field(sa_column=Column(BigInteger, nullable=False))
    first_seen: float = Field(sa_column=Column(Float, nullable=False))
    last_seen: float = Field(sa_column=Column(Float, nullable=False))


class UserDailyRow(SQLModel, table=True):
    """Usage of one user on one day, with the devices they used."""

    __tablename__ = "discovery_user_daily"

    day: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    user: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    report: int = Field(
        default=0,
        primary_key=True,
        sa_column_kwargs={"autoincrement": False, "server_default": "0"},
    )
    """The named report (`DiscoveryReportRow`) the usage belongs to."""
    transactions: int = Field(sa_column=Column(BigInteger, nullable=False))
    bytes_up: int = Field(sa_column=Column(BigInteger, nullable=False))
    bytes_down: int = Field(sa_column=Column(BigInteger, nullable=False))
    first_seen: float = Field(sa_column=Column(Float, nullable=False))
    last_seen: float = Field(sa_column=Column(Float, nullable=False))
    devices: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    apps: str = Field(default="", max_length=65535)
    """Space-separated app ids used that day."""


class AppHourlyRow(SQLModel, table=True):
    """Transactions and traffic of one app per hour (charts)."""

    __tablename__ = "discovery_app_hourly"

    hour: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    """Hours since 1970-01-01 00:00 UTC."""
    app_id: str = Field(primary_key=True, max_length=APP_ID_MAX)
    report: int = Field(
        default=0,
        primary_key=True,
        sa_column_kwargs={"autoincrement": False, "server_default": "0"},
    )
    """The named report (`DiscoveryReportRow`) the usage belongs to."""
    transactions: int = Field(sa_column=Column(BigInteger, nullable=False))
    bytes_up: int = Field(sa_column=Column(BigInteger, nullable=False))
    bytes_down: int = Field(sa_column=Column(BigInteger, nullable=False))
    blocked: int = Field(sa_column=Column(BigInteger, nullable=False))


class AlertRow(SQLModel, table=True):
    """A hit on an indicator with generateAlert, at the severity the policy set."""

    __tablename__ = "alert"
    __table_args__ = (
        Index("ix_alert_time", "time"),
        Index("ix_alert_status", "status"),
        Index("ix_alert_open_key", "indicator", "device_id", "user", "status"),
        Index("ix_alert_policy_key", "policy", "machine", "user", "app_id", "status"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True)
    )
    time: dt.datetime
    device_id: str = Field(max_length=DEVICE_ID_MAX)
    user: str = Field(default="", max_length=USER_MAX)
    domain: str = Field(max_length=DOMAIN_MAX)
    indicator: str = Field(default="", max_length=DOMAIN_MAX)
    app_id: str = Field(default="", max_length=APP_ID_MAX)
    action: str = Field(max_length=16)
    severity: str = Field(max_length=16)
    status: str = Field(default="open", max_length=16)
    """``open``, ``acknowledged`` or ``closed``."""
    acknowledged_by: str = Field(default="", max_length=128)
    acknowledged_at: dt.datetime | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)
    event_id: int | None = Field(default=None, sa_column=Column(BigInteger, unique=True))
    """The network event that raised it first (None for an alert policy's alert)."""
    hits: int = Field(default=1, sa_column=Column(BigInteger, nullable=False, server_default="1"))
    """Hits on the indicator by this device and user while the alert was open (migration
    0010: one open alert per indicator, device and user, not one per event)."""
    last_seen: dt.datetime | None = None
    """The latest of those hits (`time` is the first)."""
    policy: str = Field(default="", max_length=128, sa_column_kwargs={"server_default": ""})
    """The alert policy that raised it (migration 0014); empty for an indicator's alert."""
    machine: str = Field(default="", max_length=256, sa_column_kwargs={"server_default": ""})
    """The machine (hostname in the reports) an alert policy's alert is about."""
    details: str = Field(default="", max_length=1024, sa_column_kwargs={"server_default": ""})
    """Why an alert policy raised it, for a person (the figures compared)."""
    report: str = Field(default="", max_length=256, sa_column_kwargs={"server_default": ""})
    """The named report (data source) whose data raised it last: ``endpoint events``, an
    upload's snapshot, a syslog collector (migration 0015)."""
    forwarded_at: dt.datetime | None = None
    """When the alert was sent to the configured webhook and syslog receivers (None: not yet)."""


class DiscoveryCursorRow(SQLModel, table=True):
    """A named row to lock: ``merge-lock`` serialises rollup merges (`store.rollups`).

    Its ``network-events`` row was the continuous report's id cursor until migration 0008
    replaced it with the queue of pending batches (`event_batch_pending`)."""

    __tablename__ = "discovery_cursor"

    name: str = Field(primary_key=True, max_length=64)
    last_event_id: int = Field(sa_column=Column(BigInteger, nullable=False))


class UserFormRow(SQLModel, table=True):
    """A raw form of a user name seen in discovery data (``CONTOSO\\alice``) behind the user it
    was normalised to (``alice``): the user page lists them (migration 0013)."""

    __tablename__ = "discovery_user_form"

    user: str = Field(primary_key=True, max_length=USER_MAX)
    form: str = Field(primary_key=True, max_length=USER_MAX)
    first_seen: float = Field(sa_column=Column(Float, nullable=False))
    last_seen: float = Field(sa_column=Column(Float, nullable=False))


class MachineSourceRow(SQLModel, table=True):
    """Where a machine's traffic came from: ``logs`` (uploaded or collected) or
    ``device <id>`` (an enrolled shim's events); the machine page shows each (migration 0013)."""

    __tablename__ = "discovery_machine_source"

    machine: str = Field(primary_key=True, max_length=256)
    source: str = Field(primary_key=True, max_length=160)
    first_seen: float = Field(sa_column=Column(Float, nullable=False))
    last_seen: float = Field(sa_column=Column(Float, nullable=False))


# Core handles of the tables, for the store's statements (the bulk paths avoid ORM objects).
class DiscoveryUploadRow(SQLModel, table=True):
    """A log file uploaded to Cloud Discovery, by the SHA-256 of its bytes (migration 0011):
    the same content uploaded again is skipped instead of counted twice."""

    __tablename__ = "discovery_upload"

    sha256: str = Field(primary_key=True, max_length=64)
    name: str = Field(default="", max_length=512)
    format: str = Field(default="", max_length=32)
    records: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    uploaded_at: dt.datetime = Field(default_factory=utcnow)
    report: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    """The snapshot report the file was uploaded into (deleting it forgets the file)."""


class DiscoveryReportRow(SQLModel, table=True):
    """A named report (migration 0014): a snapshot made by one upload, or a continuous source
    (the devices' events, one syslog collector). Every rollup row belongs to one report."""

    __tablename__ = "discovery_report"
    __table_args__ = (UniqueConstraint("name", name="uq_discovery_report_name"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=256)
    kind: str = Field(max_length=16)
    """``snapshot`` (an upload) or ``continuous``."""
    source: str = Field(default="", max_length=256, sa_column_kwargs={"server_default": ""})
    """``upload``, ``endpoint`` or ``syslog LISTEN FORMAT``: a continuous source's identity."""
    format: str = Field(default="", max_length=32, sa_column_kwargs={"server_default": ""})
    files: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    """The uploaded files' names, one per line."""
    records: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    bad_lines: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    first_seen: float = Field(
        default=0.0, sa_column=Column(Float, nullable=False, server_default="0")
    )
    last_seen: float = Field(
        default=0.0, sa_column=Column(Float, nullable=False, server_default="0")
    )
    """The period the report's data covers (epoch seconds; 0: no data yet)."""
    created_at: dt.datetime = Field(default_factory=utcnow)


ENTITY = DiscoveryEntityRow.__table__  # type: ignore[attr-defined]
APP_DAY = AppDailyRow.__table__  # type: ignore[attr-defined]
DEV_DAY = DeviceDailyRow.__table__  # type: ignore[attr-defined]
DEV_APP = DeviceAppDailyRow.__table__  # type: ignore[attr-defined]
USER_DAY = UserDailyRow.__table__  # type: ignore[attr-defined]
USER_APP = UserAppDailyRow.__table__  # type: ignore[attr-defined]
HOUR = AppHourlyRow.__table__  # type: ignore[attr-defined]
ALERT = AlertRow.__table__  # type: ignore[attr-defined]
CURSOR = DiscoveryCursorRow.__table__  # type: ignore[attr-defined]
UPLOAD = DiscoveryUploadRow.__table__  # type: ignore[attr-defined]
REPORT = DiscoveryReportRow.__table__  # type: ignore[attr-defined]
USER_FORM = UserFormRow.__table__  # type: ignore[attr-defined]
MACHINE_SOURCE = MachineSourceRow.__table__  # type: ignore[attr-defined]
