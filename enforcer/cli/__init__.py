"""The `enforcer` command: the root Typer app, one module per command group, errors rendered once.

Every command module imports only Typer and small modules at import time and imports what a
command needs when it runs: `--version`, `--help` and shell completion build the whole command
tree, and must not pay for the web stack, the store or the catalog (benchmarks/cli.py).
"""

from __future__ import annotations

import sys

import typer

from enforcer import __version__
from enforcer.cli import (
    _common,
    accounts,
    audit,
    catalog,
    daemon,
    devices,
    discovery,
    doctor,
    events,
    indicators,
    init,
    plan,
    policy,
    review,
    serve,
    shim,
    sinks,
)
from enforcer.errors import EnforcerError, PolicySetError

app = typer.Typer(
    name="enforcer",
    help="Find the cloud apps your devices use and block the ones you decided against.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # click's plain help: typer's rich help shows "<bool>" beside every flag, as if it took a
    # value, and importing rich for it slowed `--help` down.
    rich_markup_mode=None,
)
init.register(app)
plan.register(app)
doctor.register(app)
daemon.register(app)
serve.register(app)
shim.register(app)
for _group in (
    catalog,
    indicators,
    policy,
    discovery,
    devices,
    events,
    sinks,
    accounts,
    audit,
    review,
):
    _group.app.rich_markup_mode = None
app.add_typer(catalog.app, name="catalog", help="Browse the app catalog (bundled and custom apps).")
app.add_typer(indicators.app, name="indicators", help="Show and manage the store's indicators.")
app.add_typer(policy.app, name="policy", help="Validate policy files; print their JSON Schema.")
app.add_typer(
    discovery.app, name="discovery", help="Cloud Discovery: upload logs, collect syslog, reports."
)
app.add_typer(devices.app, name="devices", help="Enrolled devices: revision applied, stale ones.")
app.add_typer(events.app, name="events", help="Search the network events devices reported.")
app.add_typer(sinks.app, name="sinks", help="Push indicators to rpz, hosts, dnsmasq, Defender.")
app.add_typer(accounts.app, name="accounts", help="Console/API accounts: admin or analyst tokens.")
app.add_typer(audit.app, name="audit", help="The audit log: who changed what, and when.")
app.add_typer(
    review.app, name="review", help="Review workflow: the queue of undecided apps, apps in review."
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"enforcer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    actor: str | None = typer.Option(
        None,
        "--actor",
        help="Record this command's changes in the audit log as ACTOR (default: your OS user).",
        metavar="ACTOR",
    ),
) -> None:
    """Enforcer: policy-as-code for cloud apps, enforced on every endpoint."""
    _common.set_actor(actor)


def main() -> None:
    """Entry point: run the CLI and render Enforcer's own errors for humans (exit code 1)."""
    try:
        # Without standalone mode click returns the code of a typer.Exit instead of exiting.
        code = app(standalone_mode=False)
    except PolicySetError as exc:
        for err in exc.errors:
            typer.echo(f"error: {err}", err=True)
        typer.echo(f"{len(exc.errors)} error(s): the policy set was refused as a whole.", err=True)
        sys.exit(1)
    except EnforcerError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(1)
    except Exception as exc:
        # Imported here: only a failing command pays for the catalog's import.
        from enforcer.catalog import CatalogError, UnknownAppError

        if isinstance(exc, (CatalogError, UnknownAppError)):
            typer.echo(f"error: {exc}", err=True)
            sys.exit(1)
        # click's usage errors carry their own rendering
        show = getattr(exc, "show", None)
        if callable(show):
            show()
            sys.exit(getattr(exc, "exit_code", 2))
        raise
    sys.exit(code if isinstance(code, int) else 0)
