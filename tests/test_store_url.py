"""ENFORCER_DATABASE_URL as people write it: postgres:// accepted, anything unsupported said in
one line (by every command and by doctor), and no store created in a directory that is not
there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from enforcer.errors import StoreUrlError
from enforcer.store.db import make_engine, store_url


def test_postgres_urls_get_the_bundled_driver() -> None:
    assert store_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert store_url("postgresql://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
    assert store_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert store_url("sqlite:///x.db") == "sqlite:///x.db"


@pytest.mark.parametrize("url", ["mysql://u:secret@h/db", "/var/lib/enforcer.db", "enforcer.db"])
def test_unsupported_urls_are_one_line_without_the_password(url: str) -> None:
    with pytest.raises(StoreUrlError) as caught:
        store_url(url)
    message = str(caught.value)
    assert "\n" not in message and "secret" not in message
    assert "sqlite:///PATH" in message and "postgresql://" in message


def test_a_missing_directory_is_an_error_not_a_new_store(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "store.db"
    with pytest.raises(StoreUrlError, match="does not exist"):
        make_engine(f"sqlite:///{missing}")
    assert not (tmp_path / "no").exists()
    make_engine(f"sqlite:///{tmp_path / 'store.db'}").dispose()  # an existing directory is fine


@pytest.mark.parametrize("command", [["indicators", "list"], ["doctor"]])
def test_commands_say_it_in_one_line(command: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "ENFORCER_DATABASE_URL": "mysql://u:secret@h/db"}
    done = subprocess.run(
        [sys.executable, "-m", "enforcer", *command],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "is not supported" in output and "Traceback" not in output
    assert "secret" not in output
