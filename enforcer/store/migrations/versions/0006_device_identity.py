"""devices report their identity (agent, OS version) and the revision they applied; events by app

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Server-side defaults so the devices already enrolled get "" (not NULL) for the text columns;
    # the revision and times stay NULL until the device next syncs or reports.
    with op.batch_alter_table("device") as table:
        table.add_column(
            sa.Column("os_version", sa.String(length=128), nullable=False, server_default="")
        )
        table.add_column(
            sa.Column("agent_version", sa.String(length=64), nullable=False, server_default="")
        )
        table.add_column(sa.Column("applied_revision", sa.Integer(), nullable=True))
        table.add_column(sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(
            sa.Column("identity_updated_at", sa.DateTime(timezone=True), nullable=True)
        )
    op.create_index("ix_device_hostname", "device", ["hostname"], unique=False)
    op.create_index("ix_network_event_app_time", "network_event", ["app_id", "time"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_network_event_app_time", table_name="network_event")
    op.drop_index("ix_device_hostname", table_name="device")
    with op.batch_alter_table("device") as table:
        table.drop_column("identity_updated_at")
        table.drop_column("applied_at")
        table.drop_column("applied_revision")
        table.drop_column("agent_version")
        table.drop_column("os_version")
