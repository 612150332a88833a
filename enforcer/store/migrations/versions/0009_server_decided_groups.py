"""the server decides a device's groups: what the device asked for and what an admin assigned
are kept beside the groups it receives

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Devices enrolled before keep the groups they have (they chose them): an admin reviews
    # them in `enforcer devices list` and re-assigns; their requests are those groups.
    with op.batch_alter_table("device") as table:
        table.add_column(
            sa.Column("requested_groups", sa.String(length=4096), nullable=False,
                      server_default="[]")
        )  # fmt: skip
        table.add_column(sa.Column("assigned_groups", sa.String(length=4096), nullable=True))
    op.execute("UPDATE device SET requested_groups = groups")


def downgrade() -> None:
    with op.batch_alter_table("device") as table:
        table.drop_column("assigned_groups")
        table.drop_column("requested_groups")
