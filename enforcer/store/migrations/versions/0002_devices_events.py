"""devices and network events: enrolment (issue 3) and event upload

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device",
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("os", sa.String(length=128), nullable=False),
        sa.Column("user", sa.String(length=256), nullable=False),
        sa.Column("local_ips", sa.String(length=2048), nullable=False),
        sa.Column("groups", sa.String(length=4096), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("device_id"),
    )
    with op.batch_alter_table("device", schema=None) as batch_op:
        batch_op.create_index("ix_device_token_hash", ["token_hash"], unique=True)

    op.create_table(
        "event_batch",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id", "batch_id", name="uq_event_batch_device_batch"),
    )
    op.create_table(
        "network_event",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("user", sa.String(length=256), nullable=False),
        sa.Column("local_ip", sa.String(length=64), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("dest_ip", sa.String(length=64), nullable=False),
        sa.Column("dest_port", sa.Integer(), nullable=False),
        sa.Column("bytes_up", sa.BigInteger(), nullable=False),
        sa.Column("bytes_down", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("indicator", sa.String(length=253), nullable=False),
        sa.Column("app_id", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("network_event", schema=None) as batch_op:
        batch_op.create_index("ix_network_event_device_time", ["device_id", "time"], unique=False)
        batch_op.create_index("ix_network_event_domain", ["domain"], unique=False)
        batch_op.create_index("ix_network_event_time", ["time"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("network_event", schema=None) as batch_op:
        batch_op.drop_index("ix_network_event_time")
        batch_op.drop_index("ix_network_event_domain")
        batch_op.drop_index("ix_network_event_device_time")

    op.drop_table("network_event")
    op.drop_table("event_batch")
    with op.batch_alter_table("device", schema=None) as batch_op:
        batch_op.drop_index("ix_device_token_hash")

    op.drop_table("device")
