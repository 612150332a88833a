"""`enforcer init DIR`: a policy repository of the admin's own, started from the example policies.

The examples ship inside the package (``enforcer/policy/examples``, the clone's ``policies/``),
so that the walkthrough, the demo and the console edit a copy the admin owns and never the
files a clone of Enforcer tracks.
"""

from __future__ import annotations

import shutil
import subprocess
from importlib import resources
from pathlib import Path

import typer

from enforcer.errors import EnforcerError

GITIGNORE = "# the web console's unpublished draft\n.console/\n"


def register(app: typer.Typer) -> None:
    app.command("init")(init)


def example_files() -> list[Path]:
    """The example policy files and their JSON Schema, as shipped with this build."""
    examples = Path(str(resources.files("enforcer.policy") / "examples"))
    # console.yaml is what a console wrote into a clone's own policies/: not an example.
    return sorted(
        p
        for p in examples.iterdir()
        if p.is_file() and p.suffix in (".yaml", ".json") and p.name != "console.yaml"
    )


def init(
    directory: Path = typer.Argument(
        ..., help="The new policy directory (must not exist, or be empty).", show_default=False
    ),
    git: bool = typer.Option(
        True,
        "--git/--no-git",
        help="Make it a git repository with a first commit (if git is installed).",
    ),
) -> None:
    """Start a policy repository of your own from the example policies."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise EnforcerError(f"{directory} already exists and is not empty: name a new directory")
    directory.mkdir(parents=True, exist_ok=True)
    for path in example_files():
        shutil.copyfile(path, directory / path.name)
    (directory / ".gitignore").write_text(GITIGNORE)
    names = ", ".join(p.name for p in example_files())
    typer.echo(f"Wrote the example policies to {directory}: {names}.")
    if git:
        typer.echo(_git_init(directory))
    typer.echo(
        "Use it: export ENFORCER_POLICY_DIR="
        f"{directory.resolve()}   (or --policies {directory} on each command)"
    )


def _git_init(directory: Path) -> str:
    """`git init` and a first commit; a sentence saying what was done."""
    if shutil.which("git") is None:
        return "git is not installed: the directory is not a git repository."

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args], cwd=directory, capture_output=True, text=True, check=False
        )

    if git("init", "-q").returncode != 0:
        return "git init failed: the directory is not a git repository."
    git("add", "-A")
    committed = git("commit", "-q", "-m", "Example policies from enforcer init")
    if committed.returncode != 0:
        # Most often no user.name / user.email yet: the files are staged for the admin.
        return (
            "Made it a git repository with the files staged; commit them with `git commit` "
            f"(git said: {committed.stderr.strip().splitlines()[-1] if committed.stderr.strip() else 'no reason'})."
        )
    return "Made it a git repository with a first commit."
