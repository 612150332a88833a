"""`enforcer policy validate | schema`: check a policy repo, publish the file format's JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from enforcer.cli._common import POLICIES_OPTION, policy_dir

app = typer.Typer(no_args_is_help=True)


@app.command("validate")
def validate(policies: Path | None = POLICIES_OPTION) -> None:
    """Check every policy file against the schema and the catalog; print every error (exit 1)."""
    from enforcer.pipeline.load import load_desired

    directory = policy_dir(policies)
    desired = load_desired(directory)
    typer.echo(
        f"{directory}: valid ({len(desired.indicators)} desired indicators, "
        f"{len(desired.conflicts)} shared-domain conflicts)."
    )


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of a policy file (for editors: yaml-language-server $schema)."""
    from enforcer.policy.schema import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))
