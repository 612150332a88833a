"""Application names in firewall logs -> catalog apps, for lines that name no host.

A PAN-OS TRAFFIC log names the application its App-ID recognised (``dropbox-uploading``) and no
host; a Zscaler NSS web log may carry an ``appname`` without a URL host. Such a line is
attributed to the catalog app the maintained table `app_names.csv` (beside this module, with its
sources) gives for that name: the parser puts ``app:<catalog id>`` in the record's host
(`records.APP_HOST`), which the attributor reads as that app. A name the table does not know
gives no host, as before.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

from enforcer.discovery.records import APP_HOST

TABLE = Path(__file__).with_name("app_names.csv")

_SUFFIXES = (
    "-base", "-uploading", "-downloading", "-posting", "-editing", "-file-transfer", "-web",
    "-browser-based", "-desktop", "-mobile", "-meeting", "-chat", "-api",
)  # fmt: skip
"""App-ID function variants of one family (see the table's header)."""


@cache
def _table() -> dict[tuple[str, str], str]:
    rows = (line for line in TABLE.read_text(encoding="utf-8").splitlines())
    data = (line for line in rows if line.strip() and not line.startswith("#"))
    return {(v, name.lower()): app for v, name, app in csv.reader(data)}


@cache
def app_host(vendor: str, name: str) -> str:
    """``app:<catalog id>`` for an application name a `vendor` log carries ("" when unknown)."""
    key = name.strip().lower()
    if not key or key in ("-", "unknown", "incomplete", "not-applicable"):
        return ""
    table = _table()
    app = table.get((vendor, key))
    if app is None and vendor == "panos":
        for suffix in _SUFFIXES:
            if key.endswith(suffix):
                app = table.get((vendor, key[: -len(suffix)]))
                break
    return APP_HOST + app if app else ""
