"""discovery: each user's daily upload to each catalog app, per report (the per-user upload
spike alert policy's baseline for logs)

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Data rolled up before keeps no per-user uploads: those days count as no upload.
    op.create_table(
        "discovery_user_app_daily",
        sa.Column("user", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("day", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("app_id", sa.String(length=128), primary_key=True),
        sa.Column(
            "report", sa.Integer(), primary_key=True, autoincrement=False, server_default="0"
        ),
        sa.Column("bytes_up", sa.BigInteger(), nullable=False),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("discovery_user_app_daily")
