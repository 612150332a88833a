#!/usr/bin/env bash
# Set up a virtual environment with Enforcer and its test dependencies, then run the test suite.
# The suite runs on SQLite; set ENFORCER_TEST_DATABASE_URL (e.g.
# postgresql+psycopg://postgres@127.0.0.1:5432/test) to run every store test on PostgreSQL too.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[dev]'
# Four workers on two cores: most tests wait on sockets, subprocesses and the database, so
# four overlap well (the suite took 280 s with four against about 460 s with two, same machine).
exec .venv/bin/pytest -n 4 "$@"
