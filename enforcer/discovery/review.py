"""The review workflow's reports: the review queue (discovered apps nobody has decided about,
most urgent first), the apps in review with their owners and due dates, and the custom tags.

An app is *unreviewed* when no policy entry (apps entry, rule or exception, as last applied)
gives it a sanction tag in any scope and no apps entry puts it in review. The queue ranks the
discovered ones by how many people use them times one plus their risk score (`review_priority`),
so an app 40 people use at risk 8 (360) comes before one 50 people use at risk 3 (200), and an
app with a risk of 0 still climbs with its users; transactions break ties.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection

from enforcer.catalog import Catalog
from enforcer.discovery.reports import apps_report
from enforcer.store.indicators import read_app_tags
from enforcer.store.reviews import read_custom_tags, read_reviews

UNKNOWN_RISK = 5.0
"""The risk used to rank an app the catalog does not score (the middle of the 0-10 scale)."""


def review_priority(users: int, risk: float | None) -> float:
    """How urgently an unreviewed app needs a decision: its users times (1 + its risk score)."""
    return round(users * (1 + (UNKNOWN_RISK if risk is None else risk)), 1)


def review_queue(
    conn: Connection, catalog: Catalog, first_day: int, last_day: int, *, limit: int = 0
) -> list[dict[str, Any]]:
    """Discovered, unreviewed apps in the range, most urgent first (`limit` > 0: only the
    first that many)."""
    decided, in_review = undecided_filters(conn)
    return rank_queue(apps_report(conn, catalog, first_day, last_day), decided, in_review, limit)


def undecided_filters(conn: Connection) -> tuple[set[str], set[str]]:
    """(apps some entry decides in some scope, apps in review), as last applied."""
    decided = {app_id for app_id, _scope, _tag, _origin in read_app_tags(conn)}
    return decided, set(read_reviews(conn))


def rank_queue(
    apps: Iterable[Mapping[str, Any]], decided: set[str], in_review: set[str], limit: int = 0
) -> list[dict[str, Any]]:
    """The review queue from the discovered apps report's rows: those neither decided nor in
    review, by `review_priority`, then transactions, then id."""
    ranked: list[tuple[float, int, str, dict[str, Any]]] = []
    for r in apps:
        app_id = str(r["app"])
        if app_id in decided or app_id in in_review:
            continue
        priority = review_priority(int(r["users"]), r["risk"])
        row = {
            "app": app_id,
            "name": r["name"],
            "category": r["category"],
            "risk": r["risk"],
            "priority": priority,
            "users": r["users"],
            "transactions": r["transactions"],
            "devices": r["devices"],
            "lastSeen": r["lastSeen"],
        }
        ranked.append((-priority, -int(r["transactions"]), app_id, row))
    rows = [row for *_key, row in sorted(ranked, key=lambda k: k[:3])]
    return rows[:limit] if limit > 0 else rows


def reviews_report(conn: Connection, catalog: Catalog, today: dt.date) -> list[dict[str, Any]]:
    """The apps in review (as last applied), overdue first, then by due date."""
    rows = []
    for app_id, review in read_reviews(conn).items():
        app = catalog.apps.get(app_id)
        rows.append(
            {
                "app": app_id,
                "name": app.name if app else app_id,
                "tag": review.tag,
                "owner": review.owner,
                "due": review.due,
                "overdue": review.overdue(today),
                "note": review.note,
                "origin": review.origin,
            }
        )
    return sorted(rows, key=lambda r: (not r["overdue"], r["due"], r["app"]))


def custom_tags_report(conn: Connection) -> list[dict[str, Any]]:
    """Each custom tag (as last applied) with the apps that carry it."""
    by_tag: dict[str, list[str]] = {}
    for app_id, tags in read_custom_tags(conn).items():
        for tag in tags:
            by_tag.setdefault(tag, []).append(app_id)
    return [{"tag": tag, "apps": sorted(apps)} for tag, apps in sorted(by_tag.items())]
