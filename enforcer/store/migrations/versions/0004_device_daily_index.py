"""index per-device daily rollups by (device, day)

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_discovery_device_daily_device",
        "discovery_device_daily",
        ["device", "day"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_discovery_device_daily_device", table_name="discovery_device_daily")
