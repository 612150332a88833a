"""network events name the process that made them (pid, executable name and path)

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Defaults on the server side so the rows already stored get 0 / "" (not NULL).
    with op.batch_alter_table("network_event") as table:
        table.add_column(sa.Column("pid", sa.Integer(), nullable=False, server_default="0"))
        table.add_column(
            sa.Column(
                "process_name",
                sa.String(length=255),
                nullable=False,
                server_default="",
            )
        )
        table.add_column(
            sa.Column(
                "process_path",
                sa.String(length=1024),
                nullable=False,
                server_default="",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("network_event") as table:
        table.drop_column("process_path")
        table.drop_column("process_name")
        table.drop_column("pid")
