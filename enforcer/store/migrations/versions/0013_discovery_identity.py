"""discovery identity: each device-day's last user by time, the raw user names seen behind each
user, the sources behind each machine, and whether the server trusts an enrolled device

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows rolled up before keep no last user (-1): the report falls back to the day's users.
    with op.batch_alter_table("discovery_device_daily") as table:
        table.add_column(sa.Column("last_user", sa.Integer(), nullable=False, server_default="-1"))
        table.add_column(
            sa.Column("last_user_seen", sa.Float(), nullable=False, server_default="0")
        )
    op.create_table(
        "discovery_user_form",
        sa.Column("user", sa.String(length=256), primary_key=True),
        sa.Column("form", sa.String(length=256), primary_key=True),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
    )
    op.create_table(
        "discovery_machine_source",
        sa.Column("machine", sa.String(length=256), primary_key=True),
        sa.Column("source", sa.String(length=160), primary_key=True),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
    )
    # Devices enrolled before are not trusted: their traffic keeps its own machine row until
    # an admin approves them (`enforcer devices approve`) or they re-enrol with a group secret.
    with op.batch_alter_table("device") as table:
        table.add_column(
            sa.Column("trusted_by", sa.String(length=16), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("device") as table:
        table.drop_column("trusted_by")
    op.drop_table("discovery_machine_source")
    op.drop_table("discovery_user_form")
    with op.batch_alter_table("discovery_device_daily") as table:
        table.drop_column("last_user_seen")
        table.drop_column("last_user")
