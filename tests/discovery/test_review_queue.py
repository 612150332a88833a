"""The review queue's ranking (pure): users x (1 + risk), an unscored app at the middle risk,
transactions then the id breaking ties, decided and in-review apps left out."""

from __future__ import annotations

from typing import Any

from enforcer.discovery.review import UNKNOWN_RISK, rank_queue, review_priority


def row(app: str, users: int, risk: float | None, transactions: int = 10) -> dict[str, Any]:
    return {"app": app, "name": app.title(), "category": "x", "risk": risk, "users": users,
            "transactions": transactions, "devices": users, "lastSeen": None}  # fmt: skip


def test_rank_by_users_times_one_plus_risk() -> None:
    apps = [
        row("popular-safe", 50, 3.0),  # 200
        row("risky", 40, 8.0),  # 360
        row("unscored", 30, None),  # 30 x (1 + 5) = 180
        row("tie-busier", 10, 0.0, transactions=99),  # 10
        row("tie-quieter", 10, 0.0, transactions=5),  # 10
        row("decided", 900, 9.0),
        row("reviewing", 900, 9.0),
    ]
    queue = rank_queue(apps, decided={"decided"}, in_review={"reviewing"})
    assert [r["app"] for r in queue] == [
        "risky", "popular-safe", "unscored", "tie-busier", "tie-quieter",
    ]  # fmt: skip
    assert [r["priority"] for r in queue] == [360.0, 200.0, 180.0, 10.0, 10.0]
    assert review_priority(30, None) == 30 * (1 + UNKNOWN_RISK)
    assert [r["app"] for r in rank_queue(apps, set(), set(), limit=2)] == ["decided", "reviewing"]
