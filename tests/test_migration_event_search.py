"""Migration 0007 fills `domain_rev` for the events stored before it, so a domain search finds
them too."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from alembic import command
from sqlalchemy import text

from enforcer.store.db import make_engine
from enforcer.store.event_search import EventSearch, search_events
from enforcer.store.migrate import _config


def test_events_stored_before_0007_are_found_by_domain(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(_config(engine), "0006")
    with engine.begin() as conn:
        for i, domain in enumerate(["www.dropbox.com", "dropbox.com", "notdropbox.com", ""]):
            conn.execute(
                text(
                    "INSERT INTO network_event (device_id, time, hostname, user, local_ip,"
                    " domain, dest_ip, dest_port, bytes_up, bytes_down, action, indicator,"
                    " app_id, source, pid, process_name, process_path) VALUES ('d', :time, '',"
                    " '', '', :domain, '', 0, 0, 0, 'allowed', '', '', 'dns', 0, '', '')"
                ),
                {"time": dt.datetime(2026, 11, 1, 10, i), "domain": domain},
            )
    command.upgrade(_config(engine), "head")
    with engine.connect() as conn:
        found = search_events(conn, EventSearch(domain="dropbox.com"), limit=10)
        revs = conn.execute(text("SELECT domain_rev FROM network_event ORDER BY id")).scalars()
        assert list(revs) == ["com.dropbox.www", "com.dropbox", "com.notdropbox", ""]
    assert [f.event.domain for f in found.events] == ["dropbox.com", "www.dropbox.com"]
    engine.dispose()
