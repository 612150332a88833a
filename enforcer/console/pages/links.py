"""Where a table cell links to: the page of the app, machine or user the row names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from enforcer.console.web import PREFIX, segment

Link = Callable[[dict[str, Any]], str]


def page_link(section: str, key: str) -> Link:
    """A link to ``/console/<section>/<the row's key>``; none when that cell is empty."""

    def link(row: dict[str, Any]) -> str:
        value = row[key]
        # Names from logs look like CORP\alice or lab/pc 9: always quote them.
        return f"{PREFIX}/{section}/{segment(value)}" if value else ""

    return link


def app_link(key: str = "app") -> Link:
    """A link to the page of the app whose id is in `key`."""
    return page_link("apps", key)


def machine_link(key: str = "device") -> Link:
    """A link to the page of the machine named in `key`."""
    return page_link("machines", key)


def user_link(key: str = "user") -> Link:
    """A link to the page of the user named in `key`."""
    return page_link("users", key)
