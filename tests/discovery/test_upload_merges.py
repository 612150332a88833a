"""An upload merged in many batches (the accumulator full every few keys) stores the same rows
as one merged at once, on both back ends: only a new snapshot's first merge skips reading the
stored rows (`merge_rollup_in(fresh=True)`); the later ones combine with what the earlier
ones stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from enforcer.catalog import Catalog
from enforcer.discovery.ingest import ingest_files
from enforcer.store.named_reports import ROLLUP_TABLES
from enforcer.store.tables.discovery import REPORT

HOSTS = ["boxy.example", "pastey.example", "megashare.example", "unknown-site.example"]


def _squid(path: Path, extra: str) -> Path:
    lines = []
    for i in range(400):  # the same keys again and again, in time order, across two days
        t = 1_700_000_000 + i * 450
        host = HOSTS[i % len(HOSTS)]
        status = "TCP_DENIED/403" if i % 7 == 0 else "TCP_TUNNEL/200"
        lines.append(
            f"{t}.000 5 10.0.0.{i % 5} {status} {100 + i} CONNECT {host}:443 "
            f"user{i % 3} HIER_DIRECT/1.2.3.4 -"
        )
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def _rows(engine: Engine, report: str) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        out = {}
        report_id = _report_id(conn, report)
        for table in ROLLUP_TABLES:
            rows = [
                tuple(v for k, v in r._mapping.items() if k != "report")
                for r in conn.execute(select(table).order_by(*table.primary_key.columns))
                if r._mapping["report"] == report_id
            ]
            out[table.name] = rows
        return out


def _report_id(conn: Any, name: str) -> int:
    return int(conn.scalar(select(REPORT.c.id).where(REPORT.c.name == name)))


def test_many_merges_store_what_one_merge_stores(
    engine: Engine, catalog: Catalog, tmp_path: Path
) -> None:
    once = ingest_files(
        engine, catalog, [_squid(tmp_path / "a.log", "")], "squid", report_name="once"
    )
    many = ingest_files(
        engine, catalog, [_squid(tmp_path / "b.log", "not a line\n")], "squid",
        report_name="many", max_keys=3,
    )  # fmt: skip
    assert (once.records, many.records, many.bad_lines) == (400, 400, 1)
    stored_once, stored_many = _rows(engine, "once"), _rows(engine, "many")
    assert all(stored_once[t] for t in ("discovery_app_daily", "discovery_device_app_daily"))
    assert stored_many == stored_once
