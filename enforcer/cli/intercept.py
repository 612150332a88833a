"""`enforcer shim intercept off` and the ``--intercept`` options of `enforcer shim`.

``intercept off`` removes the shim's nftables table after the service has stopped (systemd
``ExecStopPost=``): a table installed in fail-closed mode is left in place unless ``--force``,
so the same unit line serves both fail modes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from enforcer.shim.intercept.service import InterceptSettings

app = typer.Typer(no_args_is_help=True)


@app.command("off")
def off(
    force: bool = typer.Option(
        False, "--force", help="Remove the table even when it was installed fail-closed."
    ),
) -> None:
    """Remove the shim's nftables table (inet enforcer), unless it is fail-closed."""
    from enforcer.shim.intercept import nft

    try:
        removed = nft.remove(keep_fail_closed=not force)
        left = not removed and nft.installed() is not None
    except nft.NftError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if removed:
        typer.echo(f"removed table {nft.FAMILY} {nft.TABLE}")
    elif left:
        typer.echo(
            f"table {nft.FAMILY} {nft.TABLE} is fail-closed: left in place (--force removes it)"
        )
    else:
        typer.echo(f"no table {nft.FAMILY} {nft.TABLE}")


def parse_ports(text: str) -> tuple[int, ...]:
    """``80,443`` to (80, 443), or a usage error."""
    try:
        ports = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        ports = ()
    if not ports or any(not 0 < port < 65536 for port in ports):
        raise typer.BadParameter(f"{text!r} is not a list of ports", param_hint="--intercept-ports")
    return ports


def intercept_settings(
    *, ports: str, allow_quic: bool, allow_dot: bool, fail_mode: str
) -> InterceptSettings:
    """The agent's interception settings from the command line's options."""
    from enforcer.shim.intercept import nft
    from enforcer.shim.intercept.service import InterceptSettings

    if fail_mode not in nft.FAIL_MODES:
        raise typer.BadParameter(f"{fail_mode!r}: open or closed", param_hint="--fail-mode")
    return InterceptSettings(
        ports=parse_ports(ports), allow_quic=allow_quic, allow_dot=allow_dot, fail_mode=fail_mode
    )
