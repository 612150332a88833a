"""one open alert per (indicator, device, user), counting its hits, instead of one per event

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert") as table:
        table.add_column(sa.Column("hits", sa.BigInteger(), nullable=False, server_default="1"))
        table.add_column(sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE alert SET last_seen = time")
    op.create_index("ix_alert_open_key", "alert", ["indicator", "device_id", "user", "status"])


def downgrade() -> None:
    op.drop_index("ix_alert_open_key", table_name="alert")
    with op.batch_alter_table("alert") as table:
        table.drop_column("last_seen")
        table.drop_column("hits")
