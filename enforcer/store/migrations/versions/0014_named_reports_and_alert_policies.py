"""named discovery reports (one per upload, one per continuous source; the rollups carry the
report they belong to) and alerts raised by alert policies (policy, machine, details, forwarding)

Revision ID: 0014
Revises: 0013
"""

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

ROLLUPS = {
    "discovery_app_daily": ("day", "app_id", "domain"),
    "discovery_device_daily": ("day", "device"),
    "discovery_device_app_daily": ("device", "day", "app_id"),
    "discovery_user_daily": ("day", "user"),
    "discovery_app_hourly": ("hour", "app_id"),
}
EARLIER = "earlier data"
"""The report that holds what was rolled up before reports had names."""


def _set_primary_key(table: str, columns: list[str]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey")
        quoted = ", ".join(f'"{c}"' for c in columns)  # "user" is a reserved word
        op.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({quoted})")
        return
    # SQLite cannot alter a primary key: the table is copied with the new one (SQLAlchemy warns
    # that the copy's key differs from the reflected table's, which is the point).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sa.exc.SAWarning)
        with op.batch_alter_table(table, recreate="always") as batch:
            batch.create_primary_key(f"{table}_pkey", columns)


def upgrade() -> None:
    op.create_table(
        "discovery_report",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=False, server_default=""),
        sa.Column("format", sa.String(length=32), nullable=False, server_default=""),
        sa.Column("files", sa.Text(), nullable=False, server_default=""),
        sa.Column("records", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("bad_lines", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("first_seen", sa.Float(), nullable=False, server_default="0"),
        sa.Column("last_seen", sa.Float(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("name", name="uq_discovery_report_name"),
    )
    bind = op.get_bind()
    had_data = bind.execute(sa.text("SELECT 1 FROM discovery_app_daily LIMIT 1")).first()
    for table, key in ROLLUPS.items():
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("report", sa.Integer(), nullable=False, server_default="0"))
        _set_primary_key(table, [*key, "report"])
    if had_data:
        report = sa.table(
            "discovery_report",
            sa.column("name", sa.String),
            sa.column("kind", sa.String),
            sa.column("source", sa.String),
            sa.column("created_at", sa.DateTime(timezone=True)),
        )
        op.execute(
            report.insert().values(
                name=EARLIER, kind="snapshot", source=EARLIER, created_at=sa.func.now()
            )
        )
        for table in ROLLUPS:
            op.execute(
                f"UPDATE {table} SET report = "
                f"(SELECT id FROM discovery_report WHERE name = '{EARLIER}')"
            )
    with op.batch_alter_table("discovery_upload") as batch:
        batch.add_column(sa.Column("report", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("alert") as batch:
        batch.add_column(
            sa.Column("policy", sa.String(length=128), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("machine", sa.String(length=256), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("details", sa.String(length=1024), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("forwarded_at", sa.DateTime(timezone=True), nullable=True))
        batch.alter_column("event_id", existing_type=sa.BigInteger(), nullable=True)
    op.create_index(
        "ix_alert_policy_key", "alert", ["policy", "machine", "user", "app_id", "status"]
    )
    # Alerts raised before forwarding existed are not sent to a SIEM configured later.
    op.execute("UPDATE alert SET forwarded_at = time")


def downgrade() -> None:
    op.drop_index("ix_alert_policy_key", table_name="alert")
    op.execute("DELETE FROM alert WHERE event_id IS NULL")
    with op.batch_alter_table("alert") as batch:
        batch.alter_column("event_id", existing_type=sa.BigInteger(), nullable=False)
        batch.drop_column("forwarded_at")
        batch.drop_column("details")
        batch.drop_column("machine")
        batch.drop_column("policy")
    with op.batch_alter_table("discovery_upload") as batch:
        batch.drop_column("report")
    for table, key in ROLLUPS.items():
        op.execute(f"DELETE FROM {table} WHERE report <> (SELECT min(report) FROM {table})")
        _set_primary_key(table, list(key))
        with op.batch_alter_table(table) as batch:
            batch.drop_column("report")
    op.drop_table("discovery_report")
