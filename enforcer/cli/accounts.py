"""`enforcer accounts`: named console/API accounts with a role (admin or analyst) and a token.

A token is printed once, when it is made (`add`, `rotate`), on standard output alone (the
message goes to standard error), so ``TOKEN=$(enforcer accounts add ...)`` keeps just it; the
store keeps only its hash. Every change is recorded in the audit log as the OS user (or
``enforcer --actor NAME``).
"""

from __future__ import annotations

import json
from enum import StrEnum

import typer

from enforcer.cli._common import actor, store

app = typer.Typer(no_args_is_help=True)


class RoleWord(StrEnum):
    admin = "admin"
    analyst = "analyst"


@app.command("add")
def add_cmd(
    name: str = typer.Argument(..., help="Lower-case letters, digits, '.', '_', '@', '-'."),
    role: RoleWord = typer.Option(
        ..., "--role", help="admin (changes) or analyst (reads and exports only)."
    ),
) -> None:
    """Add an account and print its token (once: only its hash is kept)."""
    from enforcer.store.accounts import Role, add_account

    account, token = add_account(store(), name, Role(role.value), actor=actor())
    typer.echo(
        f"Added account {account.name} ({account.role.value}). Its token, shown this once "
        "(sign in to the console with it, or send it as 'Authorization: Bearer TOKEN'):",
        err=True,
    )
    typer.echo(token)


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
    """The accounts: name, role, when added, whether disabled (never their tokens)."""
    from enforcer.store.accounts import BUILTIN, list_accounts

    with store().connect() as conn:
        accounts = list_accounts(conn)
    if as_json:
        rows = [
            {"name": BUILTIN.name, "role": BUILTIN.role.value, "builtin": True,
             "createdAt": None, "disabledAt": None},
            *(
                {"name": a.name, "role": a.role.value, "builtin": False,
                 "createdAt": a.created_at.isoformat() if a.created_at else None,
                 "disabledAt": a.disabled_at.isoformat() if a.disabled_at else None}
                for a in accounts
            ),
        ]  # fmt: skip
        typer.echo(json.dumps(rows, indent=2))
        return
    table = [("NAME", "ROLE", "ADDED", "STATUS")]
    table.append((BUILTIN.name, BUILTIN.role.value, "-", "built in (ENFORCER_ADMIN_TOKEN)"))
    for a in accounts:
        added = f"{a.created_at:%Y-%m-%d %H:%M}" if a.created_at else "-"
        status = f"disabled {a.disabled_at:%Y-%m-%d %H:%M}" if a.disabled_at else "enabled"
        table.append((a.name, a.role.value, added, status))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@app.command("disable")
def disable_cmd(name: str = typer.Argument(...)) -> None:
    """Disable an account: its token and console sessions stop working at once."""
    from enforcer.store.accounts import disable_account

    disable_account(store(), name, actor=actor())
    typer.echo(f"Disabled account {name}: its token and console sessions no longer work.")


@app.command("rotate")
def rotate_cmd(name: str = typer.Argument(...)) -> None:
    """Give an account a new token and print it (once); the old token and the account's
    console sessions stop working at once."""
    from enforcer.store.accounts import rotate_token

    token = rotate_token(store(), name, actor=actor())
    typer.echo(f"New token of {name}, shown this once (the old one no longer works):", err=True)
    typer.echo(token)
