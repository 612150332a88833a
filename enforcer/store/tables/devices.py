"""SQLModel tables of enrolled devices and the network events they report.

Kept apart from `tables.py` (the indicator store) because they grow differently: indicators are
rewritten by reconciliation, events only ever append. Migration 0002 creates them;
0008 adds the queue of batches discovery has not rolled up yet, 0009 the groups a device asked
for and those an admin assigned, 0012 token expiry and rotation.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Column, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from enforcer.store.tables.indicators import BigId, utcnow
from enforcer.wire.limits import (
    AGENT_VERSION_MAX,
    APP_ID_MAX,
    BATCH_ID_MAX,
    DEVICE_ID_MAX,
    DOMAIN_MAX,
    HOSTNAME_MAX,
    IP_MAX,
    OS_MAX,
    USER_MAX,
)

BYTE_ORDER_DOMAIN = String(DOMAIN_MAX).with_variant(String(DOMAIN_MAX, collation="C"), "postgresql")
"""A name compared byte by byte on both back ends (SQLite's default; PostgreSQL's "C"): under
a language collation such as en_US, punctuation is ignored at first, so the names that start
with ``com.dropbox.`` are not one range of the index."""


class DeviceRow(SQLModel, table=True):
    """An enrolled endpoint. Only the SHA-256 of its bearer token is kept."""

    __tablename__ = "device"
    __table_args__ = (
        Index("ix_device_token_hash", "token_hash", unique=True),
        Index("ix_device_next_token_hash", "next_token_hash", unique=True),
        Index("ix_device_hostname", "hostname"),
    )

    device_id: str = Field(primary_key=True, max_length=DEVICE_ID_MAX)
    hostname: str = Field(default="", max_length=HOSTNAME_MAX)
    os: str = Field(default="", max_length=OS_MAX)
    os_version: str = Field(default="", max_length=OS_MAX)
    agent_version: str = Field(default="", max_length=AGENT_VERSION_MAX)
    user: str = Field(default="", max_length=USER_MAX)
    local_ips: str = Field(default="[]", max_length=2048)
    """JSON list of the addresses the device last reported (at enrolment or since)."""
    groups: str = Field(default="[]", max_length=4096)
    """JSON list of the device groups whose indicators the device receives, decided by the
    server (`enforcer.store.devices.decide_groups`), never by the device."""
    requested_groups: str = Field(default="[]", max_length=4096)
    """JSON list of the groups the device asked for at enrolment: recorded, not granted."""
    assigned_groups: str | None = Field(default=None, max_length=4096)
    """JSON list of the groups an admin assigned (None: never assigned)."""
    token_hash: str = Field(max_length=64)
    token_issued_at: dt.datetime | None = None
    """When the current token was issued: it expires ``device_token_lifetime`` later
    (None: tokens issued before migration 0012, which set it; read as the enrolment time)."""
    next_token_hash: str | None = Field(default=None, max_length=64)
    """The token handed to the device to replace the current one (over sync, before it
    expires); the first request made with it makes it the current token."""
    enrolled_at: dt.datetime = Field(default_factory=utcnow)
    last_seen: dt.datetime = Field(default_factory=utcnow)
    applied_revision: int | None = None
    """The revision the device last said it holds (its sync cursor); None before its first sync."""
    applied_at: dt.datetime | None = None
    """When the device first reported `applied_revision`: its creation to this is time to enforce."""
    identity_updated_at: dt.datetime | None = None
    """When the device last reported a change of its hostname, OS, agent or addresses."""
    trusted_by: str = Field(default="", max_length=16)
    """Why the server trusts the device's hostname (migration 0013): ``group-secret`` (enrolled
    with a group's secret), ``admin`` (approved), or "" (not trusted: its traffic is not merged
    with a log machine of the same hostname)."""


class EventBatchRow(SQLModel, table=True):
    """One accepted batch of events; its unique key makes a retried upload a no-op."""

    __tablename__ = "event_batch"
    __table_args__ = (
        UniqueConstraint("device_id", "batch_id", name="uq_event_batch_device_batch"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True)
    )
    device_id: str = Field(max_length=DEVICE_ID_MAX)
    batch_id: str = Field(max_length=BATCH_ID_MAX)
    received_at: dt.datetime = Field(default_factory=utcnow)
    count: int


class NetworkEventRow(SQLModel, table=True):
    """One DNS answer or proxied connection reported by a device (append-only)."""

    __tablename__ = "network_event"
    __table_args__ = (
        Index("ix_network_event_time", "time"),
        Index("ix_network_event_device_time", "device_id", "time"),
        Index("ix_network_event_domain", "domain"),
        Index("ix_network_event_app_time", "app_id", "time"),
        Index("ix_network_event_domain_rev_time", "domain_rev", "time"),
        Index("ix_network_event_user_time", "user", "time"),
        Index("ix_network_event_process_time", "process_name", "time"),
        Index("ix_network_event_batch_row", "batch_row"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True)
    )
    device_id: str = Field(max_length=DEVICE_ID_MAX)
    time: dt.datetime
    hostname: str = Field(default="", max_length=HOSTNAME_MAX)
    user: str = Field(default="", max_length=USER_MAX)
    local_ip: str = Field(default="", max_length=IP_MAX)
    domain: str = Field(default="", max_length=DOMAIN_MAX)
    domain_rev: str = Field(default="", sa_type=BYTE_ORDER_DOMAIN)
    """`domain` with its labels reversed (``com.dropbox.www``): a name and its subdomains are
    one range of the index, so a search for dropbox.com finds www.dropbox.com through it."""
    dest_ip: str = Field(default="", max_length=IP_MAX)
    dest_port: int = 0
    bytes_up: int = Field(default=0, sa_type=BigInteger)
    bytes_down: int = Field(default=0, sa_type=BigInteger)
    action: str = Field(max_length=16)
    indicator: str = Field(default="", max_length=DOMAIN_MAX)
    app_id: str = Field(default="", max_length=APP_ID_MAX)
    source: str = Field(max_length=16)
    pid: int = 0
    process_name: str = Field(default="", max_length=255)
    process_path: str = Field(default="", max_length=1024)
    batch_row: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    """The `event_batch` row (its id) that stored the event: the roll-up reads events by batch.
    Negative for events stored before migration 0008 and not yet rolled up then (queued as
    pseudo-batches), 0 for the rest of those."""


class PendingBatchRow(SQLModel, table=True):
    """A stored batch of events that discovery has not rolled up yet.

    Written in the transaction that stores the batch and deleted in the one that rolls it up,
    so the roll-up sees a batch exactly when its events are committed, whatever order the
    batches' ids and commits come in, and pruning keeps the events of every batch still here.
    """

    __tablename__ = "event_batch_pending"

    batch_row: int = Field(
        sa_column=Column(BigInteger, primary_key=True, autoincrement=False, nullable=False)
    )
    count: int
    """How many events the batch holds (the roll-up takes whole batches up to a total)."""


# Core handles of the tables, for the store's statements (event batches hold thousands of rows).
DEVICE = DeviceRow.__table__  # type: ignore[attr-defined]
BATCH = EventBatchRow.__table__  # type: ignore[attr-defined]
EVENT = NetworkEventRow.__table__  # type: ignore[attr-defined]
PENDING = PendingBatchRow.__table__  # type: ignore[attr-defined]
