"""device tokens expire and rotate (when the current token was issued, the hash of the one
handed out to replace it); console sessions that were signed out

Revision ID: 0012
Revises: 0011
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("device") as table:
        table.add_column(sa.Column("token_issued_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("next_token_hash", sa.String(length=64), nullable=True))
        table.create_index("ix_device_next_token_hash", ["next_token_hash"], unique=True)
    # Tokens issued before this migration count from now: a fleet is not expired (and made to
    # re-enrol all at once) by the upgrade.
    device = sa.table("device", sa.column("token_issued_at", sa.DateTime(timezone=True)))
    op.execute(device.update().values(token_issued_at=dt.datetime.now(dt.UTC)))
    op.create_table(
        "console_session_ended",
        sa.Column("sid", sa.String(length=64), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_console_session_ended_expires_at", "console_session_ended", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_console_session_ended_expires_at", table_name="console_session_ended")
    op.drop_table("console_session_ended")
    with op.batch_alter_table("device") as table:
        table.drop_index("ix_device_next_token_hash")
        table.drop_column("next_token_hash")
        table.drop_column("token_issued_at")
