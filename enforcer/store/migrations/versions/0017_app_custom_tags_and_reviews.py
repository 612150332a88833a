"""apps' custom tags and reviews as last applied (issue 17's review workflow): the discovery
reports filter by custom tag and the console ranks the review queue without the policy files

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_custom_tag",
        sa.Column("app_id", sa.String(length=128), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "tag"),
    )
    op.create_index("ix_app_custom_tag_tag", "app_custom_tag", ["tag"])
    op.create_table(
        "app_review",
        sa.Column("app_id", sa.String(length=128), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("due", sa.Date(), nullable=False),
        sa.Column("note", sa.String(length=2000), nullable=False),
        sa.Column("tag", sa.String(length=16), nullable=False),
        sa.Column("origin", sa.String(length=512), nullable=False),
        sa.PrimaryKeyConstraint("app_id"),
    )


def downgrade() -> None:
    op.drop_table("app_review")
    op.drop_index("ix_app_custom_tag_tag", table_name="app_custom_tag")
    op.drop_table("app_custom_tag")
