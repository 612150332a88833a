"""the roll-up consumes committed event batches from a queue instead of following an id cursor

Revision ID: 0008
Revises: 0007

The cursor (`discovery_cursor` row ``network-events``: the highest event id rolled up) skipped
for good the events of a batch that committed after a batch with higher ids had been rolled up
(PostgreSQL hands out ids at insert, not at commit), and pruning then deleted them. Each batch
now also writes a row of `event_batch_pending` in its own transaction, and each event names its
batch (`network_event.batch_row`); the roll-up deletes the pending rows it rolls up.

The events the old cursor had not reached yet are queued here as pseudo-batches of at most
10,000 ids each (negative keys: real batch rows are positive), so a store migrated with a
backlog loses none of it; the events at or below the cursor were rolled up and stay unqueued.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_LEGACY_GROUP = 10_000


def upgrade() -> None:
    op.create_table(
        "event_batch_pending",
        sa.Column("batch_row", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("batch_row"),
    )
    with op.batch_alter_table("network_event") as table:
        table.add_column(
            sa.Column("batch_row", sa.BigInteger(), nullable=False, server_default="0")
        )
    conn = op.get_bind()
    cursor = conn.execute(
        sa.text("SELECT last_event_id FROM discovery_cursor WHERE name = 'network-events'")
    ).scalar()
    conn.execute(
        sa.text(
            f"UPDATE network_event SET batch_row = -1 - id / {_LEGACY_GROUP} WHERE id > :cursor"
        ),
        {"cursor": cursor or 0},
    )
    conn.execute(
        sa.text(
            "INSERT INTO event_batch_pending (batch_row, count)"
            " SELECT batch_row, count(*) FROM network_event WHERE batch_row < 0 GROUP BY batch_row"
        )
    )
    conn.execute(sa.text("DELETE FROM discovery_cursor WHERE name = 'network-events'"))
    op.create_index("ix_network_event_batch_row", "network_event", ["batch_row"], unique=False)


def downgrade() -> None:
    # Back to an id cursor: everything below the lowest still-pending event counts as rolled up.
    conn = op.get_bind()
    lowest = conn.execute(
        sa.text(
            "SELECT min(e.id) FROM network_event e"
            " JOIN event_batch_pending p ON p.batch_row = e.batch_row"
        )
    ).scalar()
    highest = conn.execute(sa.text("SELECT max(id) FROM network_event")).scalar()
    cursor = (lowest - 1) if lowest is not None else (highest or 0)
    conn.execute(
        sa.text("INSERT INTO discovery_cursor (name, last_event_id) VALUES ('network-events', :c)"),
        {"c": cursor},
    )
    op.drop_index("ix_network_event_batch_row", table_name="network_event")
    with op.batch_alter_table("network_event") as table:
        table.drop_column("batch_row")
    op.drop_table("event_batch_pending")
