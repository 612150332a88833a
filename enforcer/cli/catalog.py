"""`enforcer catalog list | search | show`: the bundled catalog plus the policy repo's custom apps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from enforcer.cli._common import POLICIES_OPTION, policy_dir
from enforcer.errors import PolicySetError

if TYPE_CHECKING:
    from enforcer.catalog import App, Catalog

app = typer.Typer(no_args_is_help=True)


def _catalog(policies: Path | None) -> Catalog:
    """The bundled catalog plus the custom apps of the policy set, if it loads."""
    from enforcer.catalog import load_catalog
    from enforcer.policy.loader import load_policy_files

    bundled = load_catalog()
    directory = policy_dir(policies)
    if not directory.is_dir():
        return bundled
    try:
        policy = load_policy_files(directory)
    except PolicySetError as exc:
        typer.echo(
            f"warning: custom apps not shown, the policy set does not load ({len(exc.errors)} errors)",
            err=True,
        )
        return bundled
    return bundled.with_custom(
        c.item.model_copy(update={"custom": True}) for c in policy.custom_apps
    )


def _as_dict(item: App) -> dict[str, Any]:
    data = item.model_dump(mode="json")
    data["score"] = item.score
    data["facts_known"] = item.risk.known
    return data


HEADER = f"{'ID':<28} {'NAME':<30} {'CATEGORY':<20} RISK"


def _row(item: App) -> str:
    return f"{item.id:<28} {item.name[:30]:<30} {item.category:<20} {item.score:>4.1f}"


@app.command("list")
def list_apps(
    category: str | None = typer.Option(None, "--category", help="Only this category."),
    as_json: bool = typer.Option(False, "--json", help="A JSON array of apps."),
    policies: Path | None = POLICIES_OPTION,
) -> None:
    """List every app (id, name, category, risk score)."""
    catalog = _catalog(policies)
    apps = catalog.by_category(category) if category else list(catalog)
    if as_json:
        typer.echo(json.dumps([_as_dict(a) for a in apps], indent=2))
        return
    typer.echo(HEADER)
    for item in apps:
        typer.echo(_row(item))
    typer.echo(f"\n{len(apps)} apps")


@app.command("search")
def search(
    text: str = typer.Argument(..., help="Part of an id, name, vendor, category or domain."),
    as_json: bool = typer.Option(False, "--json"),
    policies: Path | None = POLICIES_OPTION,
) -> None:
    """Find apps by id, name, vendor, category or domain, best match first."""
    found = _catalog(policies).search(text)
    if as_json:
        typer.echo(json.dumps([_as_dict(a) for a in found], indent=2))
        return
    if not found:
        typer.echo(f"No app matches {text!r}.")
        raise typer.Exit(1)
    typer.echo(HEADER)
    for item in found:
        typer.echo(_row(item))


@app.command("show")
def show(
    app_id: str = typer.Argument(..., metavar="APP", help="An app id, e.g. dropbox."),
    as_json: bool = typer.Option(False, "--json"),
    policies: Path | None = POLICIES_OPTION,
) -> None:
    """Everything about one app: domains, risk attributes and how its score is made."""
    from enforcer.catalog import explain_risk, facts_known

    item = _catalog(policies).get(app_id)
    if as_json:
        typer.echo(json.dumps(_as_dict(item), indent=2))
        return
    typer.echo(f"{item.name} ({item.id}){'  [custom]' if item.custom else ''}")
    typer.echo(f"  vendor:   {item.vendor}")
    typer.echo(f"  category: {item.category}")
    if item.website:
        typer.echo(f"  website:  {item.website}")
    typer.echo("  domains (each covers its subdomains):")
    for domain in item.domains:
        typer.echo(f"    {domain}")
    typer.echo(f"  risk score: {item.score:.1f}/10 ({facts_known(item)})")
    for reason in explain_risk(item):
        typer.echo(f"    {reason}")
    for fact, source in sorted(item.risk.sources.items()):
        typer.echo(f"    source of {fact}: {source}")
    for domain, why in sorted(item.shared.items()):
        typer.echo(f"  {domain} is shared with another app: {why}")
