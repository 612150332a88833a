"""The machines and users lists (one implementation, `console.pages.listing.Listing`): search by
name, CSV export of every matching row with the columns computed per page, no internal keys."""

from __future__ import annotations

import csv
import io

import pytest

from tests.console.conftest import MACHINES, USERS, Console
from tests.console.test_access import session_cookie, sign_in


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize(
    ("section", "key", "names", "search", "found", "computed"),
    [
        (
            "machines",
            "device",
            [*MACHINES, "lab/pc 9"],
            "PC-0",
            MACHINES,
            ("riskLevel", "lastUser"),
        ),
        ("users", "user", [*USERS, "erin"], "ERI", ["erin"], ("devices", "apps")),
    ],
)
def test_a_list_searches_by_name_and_exports_what_it_shows(
    console: Console,
    section: str,
    key: str,
    names: list[str],
    search: str,
    found: list[str],
    computed: tuple[str, str],
) -> None:
    with console.client() as client:
        cookie = session_cookie(sign_in(client))
        every = client.get(f"/console/{section}?format=csv", headers=cookie)
        assert every.status_code == 200
        assert every.headers["content-disposition"] == f'attachment; filename="{section}.csv"'
        rows = _csv(every.text)
        assert sorted(r[key] for r in rows) == sorted(names)
        assert "ordinal" not in rows[0]
        assert all(r[computed[0]] and r[computed[1]] != "" for r in rows)
        traffic = [int(r["traffic"]) for r in rows]
        assert traffic == sorted(traffic, reverse=True)  # the table's default order

        matching = _csv(
            client.get(f"/console/{section}?format=csv&q={search}", headers=cookie).text
        )
        assert sorted(r[key] for r in matching) == sorted(found)

        page = client.get(f"/console/{section}?q={search}", headers=cookie)
        assert page.status_code == 200
        assert f"{len(found)} row{'s' if len(found) != 1 else ''}" in page.text
        assert "ordinal" not in page.text
