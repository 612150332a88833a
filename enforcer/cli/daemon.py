"""`enforcer daemon`: keep the store reconciled with the policy directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from enforcer.cli._common import POLICIES_OPTION, limit_malloc_arenas, settings
from enforcer.cli.serve import (
    HOST_OPTION,
    PORT_OPTION,
    ServeFailed,
    serve_in_background,
    with_address,
)

if TYPE_CHECKING:
    from enforcer.pipeline.daemon import Daemon


def register(app: typer.Typer) -> None:
    app.command("daemon")(daemon)


def daemon(
    policies: Path | None = POLICIES_OPTION,
    interval: float | None = typer.Option(
        None, "--interval", help="Seconds between reconcile ticks."
    ),
    once: bool = typer.Option(False, "--once", help="Run one reconcile tick and exit."),
    serve: bool = typer.Option(False, "--serve", help="Also run the API server in this process."),
    host: str | None = HOST_OPTION,
    port: int | None = PORT_OPTION,
    metrics_listen: str | None = typer.Option(
        None,
        "--metrics-listen",
        help="HOST:PORT for Prometheus metrics of a daemon without --serve.",
    ),
) -> None:
    """Reconcile the store with the policy directory, continuously (logs JSON lines)."""
    limit_malloc_arenas()  # a long-running process, with --serve the server's threads too
    from enforcer import logs
    from enforcer.pipeline.daemon import Daemon
    from enforcer.store.db import open_store

    cfg = settings()
    updates: dict[str, object] = {}
    if policies is not None:
        updates["policy_dir"] = policies
    if interval is not None:
        updates["reconcile_interval"] = interval
    cfg = with_address(cfg.model_copy(update=updates), host, port)
    if serve:
        from enforcer.api import check_server_settings

        check_server_settings(cfg)
    logs.configure("json" if cfg.log_format == "auto" else cfg.log_format, cfg.log_level)
    worker = Daemon(cfg, open_store(cfg.database_url))
    if once:
        result = worker.reconcile_tick()
        raise typer.Exit(1 if result.outcome in ("policy_error", "store_error") else 0)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if metrics_listen:
        _serve_metrics(metrics_listen, worker)
    if serve:
        try:
            with serve_in_background(cfg, worker.engine):
                worker.run()
        except ServeFailed as exc:
            # Exit at once: the server's thread and the workers it started may still be
            # unwinding, and an interpreter shutdown that meets them can abort (SIGABRT)
            # instead of exiting 1, which systemd would read as a crash, not a bad port.
            sys.stderr.write(f"error: {exc}\n")
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(1)
    else:
        worker.run()


def _serve_metrics(listen: str, worker: Daemon) -> None:
    """Expose the process registry and the store gauges on their own HTTP port."""
    from prometheus_client import start_http_server

    from enforcer.pipeline.metrics import REGISTRY, StoreCollector

    addr, _, port = listen.rpartition(":")
    REGISTRY.register(StoreCollector(worker.engine))
    start_http_server(int(port), addr=addr or "127.0.0.1", registry=REGISTRY)
