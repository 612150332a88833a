#!/usr/bin/env bash
# Set up a virtual environment with Enforcer and its test dependencies, then run the test suite.
# The suite runs on SQLite; set ENFORCER_TEST_DATABASE_URL (e.g.
# postgresql+psycopg://postgres@127.0.0.1:5432/test) to run every store test on PostgreSQL too.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[dev]'
# Compiled modules are kept: with PYTHONDONTWRITEBYTECODE set (some CI images set it) every
# pytest worker and every `enforcer` subprocess the tests start compiled the package from source
# again, and pytest rewrote every test module again (collection alone: 92 s against 16 s).
unset PYTHONDONTWRITEBYTECODE
.venv/bin/python -m compileall -q -j 2 enforcer >/dev/null
# Four workers on two cores: most tests wait on sockets, subprocesses and the database, so
# four overlap well (the suite took 280 s with four against about 460 s with two, same machine).
exec .venv/bin/pytest -n 4 "$@"
