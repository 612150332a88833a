"""The console shows machines by hostname with their enrolment (OS, groups, revision, time to
enforce, stale), the enrolled device behind a machine, and its and an app's top processes."""

from __future__ import annotations

import csv
import datetime as dt
import io

from sqlalchemy import update

from enforcer.store.devices import enroll_device, record_applied
from enforcer.store.events import EventRecord, store_batch
from enforcer.store.tables.indicators import REV
from enforcer.store.trust import approve_device
from tests.console.conftest import Console
from tests.console.test_access import session_cookie, sign_in


def _enrol_stale_pc03(console: Console) -> None:
    """pc-03 (a machine of the seeded logs) is also an enrolled shim device, an hour behind."""
    engine = console.engine
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        conn.execute(update(REV).values(created_at=now - dt.timedelta(hours=2)))
    enroll_device(
        engine, device_id="dev-pc03", hostname="pc-03", os="Debian GNU/Linux", user="dave",
        local_ips=("10.0.3.1",), groups=("eng",), os_version="12", agent_version="0.1.0",
    )  # fmt: skip
    approve_device(engine, "dev-pc03")  # trusted: one machine with pc-03 of the logs
    record_applied(engine, "dev-pc03", 0, now=now - dt.timedelta(hours=1))
    events = [
        EventRecord(now, "pc-03", "dave", "10.0.3.1", "mega.nz", "", 443, 10, 10, "blocked",
                    "mega.nz", "mega", "intercept", pid=7, process_name=name,
                    process_path=f"/usr/bin/{name}")
        for name in ("firefox", "firefox", "megacmd")
    ]  # fmt: skip
    store_batch(engine, device_id="dev-pc03", batch_id="b1", events=events)


def test_machines_show_enrolment_and_the_machine_page_its_device_and_processes(
    console: Console,
) -> None:
    _enrol_stale_pc03(console)
    with console.client() as client:
        cookie = session_cookie(sign_in(client))
        listed = client.get(
            "/console/machines", params={"q": "pc-0", "format": "csv"}, headers=cookie
        )
        rows = {r["device"]: r for r in csv.DictReader(io.StringIO(listed.text))}
        assert rows["pc-03"]["os"] == "Debian GNU/Linux 12" and rows["pc-03"]["groups"] == "eng"
        assert rows["pc-03"]["enforcement"] == "stale" and rows["pc-03"]["appliedRevision"] == "0"
        assert rows["pc-01"]["enforcement"] == "" and rows["pc-01"]["os"] == "", "logs only"

        page = client.get("/console/machines/pc-03", headers=cookie)
        assert page.status_code == 200
        assert "dev-pc03" in page.text and "stale" in page.text and "0.1.0" in page.text
        processes = client.get(
            "/console/machines/pc-03", params={"tab": "processes"}, headers=cookie
        )
        assert processes.text.index("firefox") < processes.text.index("megacmd")
        assert "/usr/bin/megacmd" in processes.text

        app = client.get("/console/apps/mega", headers=cookie)
        assert "Top processes" in app.text and "megacmd" in app.text
