"""log files uploaded to Cloud Discovery, by content hash: the same content twice is skipped

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "discovery_upload",
        sa.Column("sha256", sa.String(length=64), primary_key=True),
        sa.Column("name", sa.String(length=512), nullable=False, server_default=""),
        sa.Column("format", sa.String(length=32), nullable=False, server_default=""),
        sa.Column("records", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("discovery_upload")
