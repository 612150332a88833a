"""Apps' custom tags and reviews as last applied (tables ``app_custom_tag`` and ``app_review``).

Apply writes them with the apps' sanction tags (`write_custom_tags_and_reviews`, called from
`store.indicators`), so a report can filter discovered apps by custom tag and the console can
rank the review queue from the store alone, like the tags the reports already show.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import Connection, delete, select

from enforcer.plan.model import AppState, ReviewNote
from enforcer.store.bulk import insert_rows
from enforcer.store.tables.indicators import CUSTOM_TAG, REVIEW


def write_custom_tags_and_reviews(conn: Connection, apps: Iterable[AppState]) -> None:
    """Replace the stored custom tags and reviews by the plan's (untouched when equal)."""
    apps = list(apps)
    tags = {(a.app_id, tag) for a in apps for tag in a.custom_tags}
    if set(read_custom_tag_pairs(conn)) != tags:
        conn.execute(delete(CUSTOM_TAG))
        insert_rows(conn, CUSTOM_TAG, [{"app_id": a, "tag": t} for a, t in sorted(tags)])
    reviews = {a.app_id: a.review for a in apps if a.review is not None}
    if read_reviews(conn) != reviews:
        conn.execute(delete(REVIEW))
        rows = [
            {
                "app_id": app_id,
                "owner": r.owner,
                "due": dt.date.fromisoformat(r.due),
                "note": r.note,
                "tag": r.tag,
                "origin": r.origin,
            }
            for app_id, r in sorted(reviews.items())
        ]
        insert_rows(conn, REVIEW, rows)


def read_custom_tag_pairs(conn: Connection) -> list[tuple[str, str]]:
    """(app_id, custom tag) as last applied, sorted."""
    rows = conn.execute(
        select(CUSTOM_TAG.c.app_id, CUSTOM_TAG.c.tag).order_by(
            CUSTOM_TAG.c.app_id, CUSTOM_TAG.c.tag
        )
    )
    return [(str(a), str(t)) for a, t in rows]


def read_custom_tags(conn: Connection) -> dict[str, tuple[str, ...]]:
    """App id -> its custom tags (sorted), as last applied."""
    found: dict[str, list[str]] = {}
    for app_id, tag in read_custom_tag_pairs(conn):
        found.setdefault(app_id, []).append(tag)
    return {app_id: tuple(tags) for app_id, tags in found.items()}


def apps_with_custom_tag(conn: Connection, tag: str) -> set[str]:
    """The apps that carry a custom tag (empty when no app does)."""
    rows = conn.execute(select(CUSTOM_TAG.c.app_id).where(CUSTOM_TAG.c.tag == tag))
    return {str(r[0]) for r in rows}


def read_reviews(conn: Connection) -> dict[str, ReviewNote]:
    """App id -> its review, as last applied."""
    rows = conn.execute(
        select(
            REVIEW.c.app_id, REVIEW.c.owner, REVIEW.c.due, REVIEW.c.note, REVIEW.c.tag,
            REVIEW.c.origin,
        )
    )  # fmt: skip
    return {
        str(app_id): ReviewNote(str(owner), _iso(due), str(note), str(tag), str(origin))
        for app_id, owner, due, note, tag, origin in rows
    }


def _iso(value: object) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)[:10]  # SQLite may hand back the ISO text
