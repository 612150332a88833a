"""The store (SQLite or PostgreSQL): every SQL statement and Alembic call of Enforcer lives here.

- `db`: engines; `migrate`: schema migrations; `tables/`: the SQLModel tables.
- Indicators: `indicators` (read the actual state, apply a plan), `bulk` (the COPY/executemany
  writer), `feed` (revisions, epochs, change log, what devices sync), `lookup` (browsing stored
  indicators), `by_name` (one name's indicators without the table models, and the stored-row
  shapes), `manual` (manual indicators), `expiry`, `plan_key` (the key that signs plan files).
- Devices and their events: `devices` (enrolment, groups, facts, applied revisions),
  `events` (uploaded network events and the queue of batches the continuous report has not
  rolled up), `event_search` (the events search), `processes` (top processes), `lock` (the
  daemon's leader lock).
- Cloud Discovery: `rollups` (merge a batch), `queries` (report reads), `entities` (name
  ordinals), `encoding` (day keys and bitsets), `alerts` (deduplicated per indicator, device
  and user; retention), `uploads` (uploaded log files by content hash).
"""
