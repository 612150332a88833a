"""The store (SQLite or PostgreSQL): every SQL statement and Alembic call of Enforcer lives here.

- `db`: engines; `migrate`: schema migrations; `tables/`: the SQLModel tables.
- Indicators: `indicators` (read the actual state, apply a plan), `bulk` (the COPY/executemany
  writer), `feed` (revisions, change log, what devices sync), `lookup` (browsing stored
  indicators), `manual` (manual indicators), `expiry`.
- Devices and their events: `devices`, `events` (uploaded network events and the queue of
  batches the continuous report has not rolled up), `lock` (the daemon's leader lock).
- Cloud Discovery: `rollups` (merge a batch), `queries` (report reads), `entities` (name
  ordinals), `encoding` (day keys and bitsets), `alerts`.
"""
