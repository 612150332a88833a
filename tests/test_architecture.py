"""The architecture as tests: the import contracts, a pure decision core, a CLI that starts light.

The contracts are in pyproject.toml ([tool.importlinter]). import-linter is a dev dependency:
without it these tests fail rather than skip, since a skipped contract guards nothing.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DECIDE = REPO / "enforcer" / "decide"

IO_LIBRARIES = frozenset({
    "aiohttp", "alembic", "apscheduler", "asyncio", "dns", "fastapi", "ftplib", "http", "httpx",
    "logging", "os", "prometheus_client", "psycopg", "requests", "selectors", "shutil", "socket",
    "socketserver", "sqlalchemy", "sqlite3", "sqlmodel", "ssl", "starlette", "structlog",
    "subprocess", "tempfile", "urllib", "uvicorn", "watchfiles",
})  # fmt: skip
"""Top-level modules that reach a disk, a network, a database, a process or a log."""

HEAVY_AT_START = frozenset({
    "alembic", "apscheduler", "fastapi", "httpx", "pydantic_settings", "sqlalchemy", "sqlmodel",
    "starlette", "structlog", "uvicorn",
})  # fmt: skip
"""What `enforcer --help` must not import: each costs tens of milliseconds before any output."""


def test_import_contracts_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        from importlinter.cli import lint_imports
    except ImportError as exc:
        raise AssertionError(
            "import-linter is missing: pip install -e '.[dev]' (it is a dev dependency)"
        ) from exc
    code = lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert code == 0, report[-8000:]


def _imported_roots(path: Path) -> set[str]:
    """The top-level module of every import statement in a file, wherever it is written."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_decision_core_imports_no_io_library() -> None:
    files = sorted(DECIDE.rglob("*.py"))
    assert len(files) >= 5, files
    found = {
        str(path.relative_to(REPO)): sorted(_imported_roots(path) & IO_LIBRARIES) for path in files
    }
    assert {file: libs for file, libs in found.items() if libs} == {}
    # The dynamic ways in are not used either.
    for path in files:
        text = path.read_text()
        assert "importlib" not in text and "__import__" not in text, path


def test_the_cli_imports_no_web_stack_or_store_at_start() -> None:
    probe = (
        "import sys, enforcer.cli\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY_AT_START)!r}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
