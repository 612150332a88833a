"""The same log content is counted once (issue 15): the same bytes twice in one upload, under
another file name, are read once. On both back ends. (Uploaded again later:
test_discovery_cli.py; through the API: tests/api/test_discovery_upload_same_content.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.discovery.test_discovery_cli import LOGS, run

SQUID = LOGS / "squid-access.log"


def test_the_same_bytes_twice_in_one_upload_are_counted_once(tmp_path: Path, db_url: str) -> None:
    copy = tmp_path / "copy-of-squid.log"
    shutil.copyfile(SQUID, copy)
    done = run(["upload", "--format", "squid", "--json", str(SQUID), str(copy)], db_url)
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert [s["file"] for s in stats["skipped"]] == [str(copy)]
    assert stats["records"] == 30, "the copy's lines are not read again"
    listed = json.loads(run(["apps", "--since", "3650d", "--json"], db_url).stdout)
    assert {a["app"]: a["transactions"] for a in listed}["dropbox"] == 2
