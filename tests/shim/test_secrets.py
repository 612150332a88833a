"""The shim's secrets and state: the enrolment secret from a file or systemd's credential (not
the command line), and a state directory private to the shim's user."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from enforcer.cli import app
from enforcer.shim.report.identity import read_secret_file, secure_state_dir


@pytest.fixture(autouse=True)
def _logging_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    """`enforcer shim` configures logging to the stderr it has, which is CliRunner's buffer
    here, closed when the command returns: later tests of this worker would log into it."""
    monkeypatch.setattr("enforcer.logs.configure", lambda *args, **kwargs: None)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_state_directory_and_its_files_become_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    (state / "token").write_text("t")
    (state / "indicators.sqlite").write_text("")
    os.chmod(state / "token", 0o644)
    os.chmod(state / "indicators.sqlite", 0o666)
    secure_state_dir(state)
    assert _mode(state) == 0o700
    assert _mode(state / "token") == 0o600 and _mode(state / "indicators.sqlite") == 0o600


def test_a_secret_file_is_read_without_its_newline_and_refused_when_empty(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("s3cret-value-0123456789\n")
    assert read_secret_file(path) == "s3cret-value-0123456789"
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_secret_file(path)
    with pytest.raises(ValueError, match="cannot read"):
        read_secret_file(tmp_path / "missing")


def _run(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    # --state-dir under a missing parent of a file: the shim stops right after reading its
    # settings (cannot create the state directory), which is all these tests need.
    result = CliRunner().invoke(app, ["shim", *args], env={"COLUMNS": "300", **env})
    return result.exit_code, result.output


@pytest.mark.parametrize("how", ["file", "credential"])
def test_the_cli_takes_the_secret_from_a_file_or_systemds_credential(
    tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from enforcer.cli import shim as shim_cli

    seen: list[str] = []

    def fake_run(agent_settings: object, _metrics: object) -> None:
        seen.append(agent_settings.enroll_secret)  # type: ignore[attr-defined]

    monkeypatch.setattr(shim_cli, "_run_agent", fake_run)
    secret = tmp_path / "enroll-secret"
    secret.write_text("from-a-file-0123456789\n")
    args = ["--server", "http://127.0.0.1:9", "--state-dir", str(tmp_path / "s")]
    env = {"ENFORCER_ENROLL_SECRET": ""}
    if how == "file":
        args += ["--enroll-secret-file", str(secret)]
    else:
        env["CREDENTIALS_DIRECTORY"] = str(tmp_path)
    _code, output = _run(args, env)
    assert seen == ["from-a-file-0123456789"], output
    assert "warning" not in output


def test_a_secret_on_the_command_line_is_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from enforcer.cli import shim as shim_cli

    monkeypatch.setattr(shim_cli, "_run_agent", lambda *a: None)
    _code, output = _run(
        ["--server", "http://127.0.0.1:9", "--state-dir", str(tmp_path / "s"),
         "--enroll-secret", "on-the-command-line-0123"],
        {},
    )  # fmt: skip
    assert "can be read by every local user" in output


def test_an_unreadable_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    code, output = _run(
        ["--server", "http://127.0.0.1:9", "--state-dir", str(tmp_path / "s"),
         "--enroll-secret-file", str(tmp_path / "nope")],
        {},
    )  # fmt: skip
    assert code != 0 and "--enroll-secret-file" in output and "cannot read the secret" in output
