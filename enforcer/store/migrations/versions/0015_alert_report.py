"""alerts name the report (data source) whose data raised them

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Alerts raised before were all raised by the devices' events (the only source that was
    # checked): they name that report.
    with op.batch_alter_table("alert") as table:
        table.add_column(
            sa.Column("report", sa.String(length=256), nullable=False, server_default="")
        )
    op.execute("UPDATE alert SET report = 'endpoint events'")


def downgrade() -> None:
    with op.batch_alter_table("alert") as table:
        table.drop_column("report")
