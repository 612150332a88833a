"""`enforcer shim`: run the endpoint agent (DNS sinkhole, proxy, sync client, event reporter),
and `enforcer shim configure`: point the host's own resolver at it, without interception."""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from enforcer.cli import intercept as intercept_cli
from enforcer.cli._common import raise_file_limit, settings
from enforcer.shim.report.spool import DEFAULT_MAX_EVENTS

if TYPE_CHECKING:
    from enforcer.shim.agent import AgentSettings
    from enforcer.shim.proxy.parent import ParentProxy


def register(app: typer.Typer) -> None:
    """Add the ``shim`` command (and its ``intercept`` subcommands) to the root app."""
    group = typer.Typer(invoke_without_command=True)
    group.callback()(shim)
    group.command("configure")(configure)
    group.add_typer(
        intercept_cli.app, name="intercept", help="Manage the interception table (Linux)."
    )
    app.add_typer(group, name="shim")


def parse_hostport(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``) to a pair; a bare host takes `default_port`."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:  # a bare name, IPv4 or unbracketed IPv6 address
        host, port = text, ""
    if not port and default_port is not None:
        port = str(default_port)
    if not host or not port.isdigit() or int(port) > 65535:
        raise typer.BadParameter(f"{text!r} is not HOST:PORT")
    return host, int(port)


def parse_parent_proxy(url: str) -> ParentProxy:
    """The ``--parent-proxy`` URL, or a usage error saying what is wrong with it."""
    from enforcer.shim.proxy.parent import ParentProxy

    try:
        return ParentProxy.parse(url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--parent-proxy") from None


def check_networks(text: str) -> tuple[str, ...]:
    """The ``--allow-clients`` networks, or a usage error naming the one that is not."""
    from enforcer.shim.clients import parse_networks, split_networks

    items = split_networks(text)
    try:
        parse_networks(items)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--allow-clients") from None
    return tuple(items)


_SWITCH_INTERVAL = 0.0005
"""Seconds a thread holds the interpreter lock while another waits for it (default 0.005)."""
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""A device group name, as the server accepts it at enrolment."""


def check_groups(groups: list[str]) -> tuple[str, ...]:
    """The groups, or a usage error naming the first one the server would refuse."""
    for name in groups:
        if not _GROUP.match(name):
            raise typer.BadParameter(
                f"{name!r}: a group name is letters, digits, '_', '.', '-' (64 at most)",
                param_hint="--group",
            )
    return tuple(groups)


def shim(
    ctx: typer.Context,
    server: str | None = typer.Option(
        None, "--server", help="Server base URL, e.g. http://host:8440."
    ),
    enroll_secret: str | None = typer.Option(
        None,
        "--enroll-secret",
        envvar="ENFORCER_ENROLL_SECRET",
        help="Enrolment secret (or ENFORCER_ENROLL_SECRET); on a command line every local user "
        "can read it: prefer --enroll-secret-file or systemd's LoadCredential=enroll-secret.",
    ),
    enroll_secret_file: Path | None = typer.Option(
        None,
        "--enroll-secret-file",
        envvar="ENFORCER_ENROLL_SECRET_FILE",
        help="Read the enrolment secret from this file (default: $CREDENTIALS_DIRECTORY/"
        "enroll-secret when systemd passes one).",
    ),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", help="Device id, token, indicator cache and event spool live here."
    ),
    dns_listen: str = typer.Option("127.0.0.1:53", "--dns-listen", help="DNS HOST:PORT."),
    proxy_listen: str = typer.Option("127.0.0.1:3128", "--proxy-listen", help="Proxy HOST:PORT."),
    no_proxy: bool = typer.Option(False, "--no-proxy", help="Run the DNS front end only."),
    allow_clients: str | None = typer.Option(
        None,
        "--allow-clients",
        help="With a --dns-listen/--proxy-listen address beyond loopback: the networks served "
        "besides loopback, e.g. 10.0.0.0/8,192.168.0.0/16 (default: ENFORCER_SHIM_ALLOW_CLIENTS, "
        "else the private networks); others are refused.",
    ),
    upstream: list[str] = typer.Option(
        [], "--upstream", help="Upstream resolver HOST[:PORT] (repeatable, tried in order)."
    ),
    group: list[str] = typer.Option([], "--group", help="Device group (repeatable)."),
    fail_closed: bool = typer.Option(
        False, "--fail-closed", help="Refuse DNS queries until a first indicator set is loaded."
    ),
    sinkhole_ip: str | None = typer.Option(
        None, "--sinkhole-ip", help="Answer blocked names with this address (default NXDOMAIN)."
    ),
    max_ttl: int = typer.Option(60, "--max-ttl", help="Largest TTL given for forwarded answers."),
    blocked_ttl: int = typer.Option(10, "--blocked-ttl", help="TTL of blocked answers."),
    sync_wait: float = typer.Option(30, "--sync-wait", help="Long-poll seconds per sync request."),
    spool_max_events: int = typer.Option(
        DEFAULT_MAX_EVENTS, "--spool-max-events", help="Bound of the on-disk event spool."
    ),
    metrics_listen: str | None = typer.Option(
        None, "--metrics-listen", help="HOST:PORT for this shim's Prometheus metrics (loopback)."
    ),
    intercept: bool = typer.Option(
        False,
        "--intercept",
        help="Divert every process's DNS and web traffic to the shim (Linux nftables, root).",
    ),
    intercept_ports: str = typer.Option(
        "80,443", "--intercept-ports", help="TCP ports diverted to the transparent listener."
    ),
    allow_quic: bool = typer.Option(
        False, "--allow-quic", help="With --intercept: let QUIC (UDP 443) through."
    ),
    allow_dot: bool = typer.Option(
        False, "--allow-dot", help="With --intercept: let DNS over TLS/QUIC (port 853) through."
    ),
    parent_proxy: str | None = typer.Option(
        None,
        "--parent-proxy",
        envvar="ENFORCER_SHIM_PARENT_PROXY",
        help="Relay allowed traffic through this proxy: http://[USER:PASSWORD@]HOST:PORT "
        "(or ENFORCER_SHIM_PARENT_PROXY, which keeps a password out of the process list).",
    ),
    fail_mode: str = typer.Option(
        "open",
        "--fail-mode",
        help="With --intercept, after the shim is killed: open (intercept off removes the "
        "table) or closed (the table stays and diverted traffic fails).",
    ),
) -> None:
    """Enforce the server's indicators on this device and report its network events."""
    if ctx.invoked_subcommand is not None:
        return

    from enforcer import logs
    from enforcer.shim.agent import AgentFailed, AgentSettings
    from enforcer.shim.dns.answer import DnsSettings
    from enforcer.shim.intercept.nft import NftError

    enroll_secret = _enroll_secret(ctx, enroll_secret, enroll_secret_file)
    for value, option in (
        (server, "--server"),
        (enroll_secret, "--enroll-secret"),
        (state_dir, "--state-dir"),
    ):
        if value is None:
            raise typer.BadParameter("missing", param_hint=option)
    assert server is not None and enroll_secret is not None and state_dir is not None
    if intercept and no_proxy:
        raise typer.BadParameter(
            "--intercept decides web traffic with the proxy's rules", param_hint="--no-proxy"
        )
    intercepting = (
        intercept_cli.intercept_settings(
            ports=intercept_ports, allow_quic=allow_quic, allow_dot=allow_dot, fail_mode=fail_mode
        )
        if intercept
        else None
    )
    parent = parse_parent_proxy(parent_proxy) if parent_proxy else None
    networks = check_networks(allow_clients) if allow_clients is not None else None
    cfg = settings()
    logs.configure("json" if cfg.log_format == "auto" else cfg.log_format, cfg.log_level)
    dns_host, dns_port = parse_hostport(dns_listen)
    proxy_host, proxy_port = parse_hostport(proxy_listen)
    if networks is None and cfg.shim_allow_clients is not None:
        networks = tuple(cfg.shim_allow_clients)
    agent_settings = AgentSettings(
        server=server,
        enroll_secret=enroll_secret,
        state_dir=state_dir,
        dns=DnsSettings(
            listen_host=dns_host,
            listen_port=dns_port,
            upstreams=tuple(parse_hostport(u, 53) for u in upstream),
            blocked_ttl=blocked_ttl,
            max_ttl=max_ttl,
            sinkhole=sinkhole_ip,
            fail_closed=fail_closed,
        ),
        proxy_host=proxy_host,
        proxy_port=proxy_port,
        proxy=not no_proxy,
        allow_clients=networks,
        groups=check_groups(group),
        sync_wait=sync_wait,
        spool_max_events=spool_max_events,
        intercept=intercepting,
        parent_proxy=parent,
    )
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        _run_agent(agent_settings, metrics_listen)
    except AgentFailed as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except (OSError, NftError) as exc:  # a port in use, an unwritable state directory, no nft
        logs.get_logger("enforcer.shim").error("shim.cannot_start", error=str(exc))
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def _enroll_secret(ctx: typer.Context, given: str | None, path: Path | None) -> str | None:
    """The enrolment secret: from --enroll-secret-file, else systemd's credential
    ``enroll-secret``, else --enroll-secret / ENFORCER_ENROLL_SECRET (warned about when it is
    on the command line, where any local user reads it in /proc)."""

    from enforcer.shim.report.identity import read_secret_file

    if path is None and given is None and os.environ.get("CREDENTIALS_DIRECTORY"):
        credential = Path(os.environ["CREDENTIALS_DIRECTORY"]) / "enroll-secret"
        if credential.exists():
            path = credential
    if path is not None:
        try:
            return read_secret_file(path)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--enroll-secret-file") from None
    source = ctx.get_parameter_source("enroll_secret")
    if given is not None and source is not None and source.name == "COMMANDLINE":
        typer.echo(
            "warning: --enroll-secret on the command line can be read by every local user; "
            "use --enroll-secret-file or ENFORCER_ENROLL_SECRET",
            err=True,
        )
    return given


def _run_agent(agent_settings: AgentSettings, metrics_listen: str | None) -> None:
    """Run the shim until it is stopped (a signal) or fails."""
    import asyncio

    os.umask(0o077)  # every file the shim creates (token, cache, spool, bypasses) is private
    raise_file_limit()
    # The reporter's worker thread encodes and stores a flush of events while connections
    # wait on the event loop's thread; with the interpreter's default 5 ms switch interval a
    # connection arriving then waited up to 5 ms for the lock. A tenth of that keeps the
    # loop's wait below the connection set-up it adds to (the flush takes a little longer).
    sys.setswitchinterval(_SWITCH_INTERVAL)

    asyncio.run(_main(agent_settings, metrics_listen))


async def _main(agent_settings: AgentSettings, metrics_listen: str | None) -> None:
    import asyncio
    import signal

    from enforcer import logs
    from enforcer.shim.agent import run_agent

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Until the agent has started (it then spools its events on SIGHUP), a SIGHUP is ignored:
    # its default action would end the shim.
    loop.add_signal_handler(
        signal.SIGHUP,
        lambda: logs.get_logger("enforcer.shim").info("shim.sighup", action="ignored: starting"),
    )
    await run_agent(agent_settings, stop, metrics_listen=metrics_listen)


RESOLVED_DROP_IN = Path("/etc/systemd/resolved.conf.d/enforcer.conf")
_MARK = "# Written by `enforcer shim configure --systemd-resolved`"


def resolved_drop_in(host: str, port: int) -> str:
    """A systemd-resolved drop-in sending every name (``Domains=~.``) to the shim's DNS."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return (
        f"{_MARK}: every DNS query of this host\n"
        "# goes to the Enforcer shim. To undo: remove this file, restart systemd-resolved.\n"
        "[Resolve]\n"
        f"DNS={address}\n"
        "Domains=~.\n"
    )


def configure(
    systemd_resolved: bool = typer.Option(
        False,
        "--systemd-resolved",
        help="Write the systemd-resolved drop-in that sends the host's DNS to the shim.",
    ),
    dns: str = typer.Option(
        "127.0.0.1:53", "--dns", help="The shim's DNS address, IP[:PORT] (its --dns-listen)."
    ),
    output: Path = typer.Option(
        RESOLVED_DROP_IN, "--output", help="Where to write the drop-in.", show_default=True
    ),
    force: bool = typer.Option(
        False, "--force", help="Overwrite a file at --output that this command did not write."
    ),
) -> None:
    """Point this host at the shim without interception (see docs/endpoints.md)."""
    if not systemd_resolved:
        raise typer.BadParameter("say what to configure", param_hint="--systemd-resolved")
    host, port = parse_hostport(dns, 53)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise typer.BadParameter(
            f"{dns!r}: systemd-resolved takes an IP address, not a name", param_hint="--dns"
        ) from None
    if output.exists() and not force:
        try:
            ours = output.read_text(encoding="utf-8", errors="replace").startswith(_MARK)
        except OSError as exc:
            raise typer.BadParameter(f"{output}: {exc.strerror}", param_hint="--output") from None
        if not ours:
            typer.echo(
                f"error: {output} exists and was not written by enforcer; "
                "move it away or pass --force to replace it",
                err=True,
            )
            raise typer.Exit(1)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(resolved_drop_in(host, port), encoding="utf-8")
    except OSError as exc:
        typer.echo(f"error: cannot write {output}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Wrote {output}: systemd-resolved will ask {dns} for every name.")
    typer.echo("Next: systemctl restart systemd-resolved   (check with: resolvectl status)")
    typer.echo(
        "The shim's own --upstream must be a real resolver, not 127.0.0.53 (that is "
        "systemd-resolved itself, which now asks the shim: a loop)."
    )
