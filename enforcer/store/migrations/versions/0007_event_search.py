"""network events are searchable by domain (and its subdomains), user and process, newest first

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _reversed(domain: str) -> str:
    # The same as enforcer.store.events.reversed_domain, copied so that this migration keeps
    # meaning what it meant when the code moves on.
    return ".".join(reversed(domain.split("."))) if domain else ""


def upgrade() -> None:
    with op.batch_alter_table("network_event") as table:
        table.add_column(
            sa.Column(
                "domain_rev",
                # Byte order on PostgreSQL too, whatever the database's collation: a name and
                # its subdomains must be one range of the index.
                sa.String(length=253).with_variant(
                    sa.String(length=253, collation="C"), "postgresql"
                ),
                nullable=False,
                server_default="",
            )
        )
    # One UPDATE per distinct name (through the domain index), not per row: names repeat.
    conn = op.get_bind()
    names = [row[0] for row in conn.execute(sa.text("SELECT DISTINCT domain FROM network_event"))]
    update = sa.text("UPDATE network_event SET domain_rev = :rev WHERE domain = :domain")
    for name in names:
        if name:
            conn.execute(update, {"rev": _reversed(name), "domain": name})
    op.create_index(
        "ix_network_event_domain_rev_time", "network_event", ["domain_rev", "time"], unique=False
    )
    op.create_index("ix_network_event_user_time", "network_event", ["user", "time"], unique=False)
    op.create_index(
        "ix_network_event_process_time", "network_event", ["process_name", "time"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_network_event_process_time", table_name="network_event")
    op.drop_index("ix_network_event_user_time", table_name="network_event")
    op.drop_index("ix_network_event_domain_rev_time", table_name="network_event")
    with op.batch_alter_table("network_event") as table:
        table.drop_column("domain_rev")
