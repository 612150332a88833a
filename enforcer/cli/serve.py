"""`enforcer serve`: run the API server (enrolment, sync, events, Indicators API) under uvicorn.

Also `serve_in_background`, which `enforcer daemon --serve` uses to run the server in a thread
next to the daemon's scheduler (the daemon keeps the main thread and its signal handlers).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from enforcer.cli._common import limit_malloc_arenas, raise_file_limit, settings
from enforcer.errors import EnforcerError

if TYPE_CHECKING:
    import socket

    import uvicorn
    from fastapi import FastAPI
    from sqlalchemy import Engine

    from enforcer.config import Settings

HOST_OPTION = typer.Option(None, "--host", help="Listen address (default: ENFORCER_SERVER_HOST).")
PORT_OPTION = typer.Option(None, "--port", help="Listen port (default: ENFORCER_SERVER_PORT).")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(host: str | None = HOST_OPTION, port: int | None = PORT_OPTION) -> None:
    """Run the API server: device enrolment and sync, event upload, the admin Indicators API."""
    limit_malloc_arenas()  # before any thread: the server's memory stays flat (soak)
    from enforcer import logs
    from enforcer.api import check_server_settings
    from enforcer.store.db import open_store

    cfg = with_address(settings(), host, port)
    check_server_settings(cfg)
    logs.configure("json" if cfg.log_format == "auto" else cfg.log_format, cfg.log_level)
    server = make_server(cfg, open_store(cfg.database_url))
    server.run()
    logs.get_logger("enforcer.serve").info("server_stopped")


def with_address(cfg: Settings, host: str | None, port: int | None) -> Settings:
    """Settings with the command line's listen address applied."""
    updates: dict[str, object] = {}
    if host is not None:
        updates["server_host"] = host
    if port is not None:
        updates["server_port"] = port
    return cfg.model_copy(update=updates)


def make_server(cfg: Settings, engine: Engine) -> uvicorn.Server:
    """A uvicorn server for the API and the console on a migrated store (not started)."""
    import uvicorn

    from enforcer.logs import get_logger
    from enforcer.webapp import create_web_app

    raise_file_limit()  # every long-polling device holds a connection
    app = create_web_app(cfg, engine)
    config = uvicorn.Config(
        app,
        host=cfg.server_host,
        port=cfg.server_port,
        log_config=None,  # structlog renders our own events; uvicorn's access log would repeat them
        access_log=False,
        proxy_headers=False,  # the client address: api.deps.client_address (trusted proxies only)
        server_header=False,
        timeout_graceful_shutdown=5,
        http=_timed_protocol(cfg.header_timeout, cfg.body_timeout),
        limit_concurrency=cfg.max_connections,
    )
    get_logger("enforcer.serve").info(
        "server_starting",
        host=cfg.server_host,
        port=cfg.server_port,
        store=engine.url.render_as_string(hide_password=True),
        console_url=console_url(cfg),
        policy_dir=str(cfg.policy_dir.resolve()),
    )
    return _server(config, app)


def console_url(cfg: Settings) -> str:
    """Where an admin on this machine opens the console (a wildcard listen address is reached
    on the loopback one)."""
    from enforcer.console.web import PREFIX

    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(cfg.server_host)
    if host is None:
        host = f"[{cfg.server_host}]" if ":" in cfg.server_host else cfg.server_host
    return f"http://{host}:{cfg.server_port}{PREFIX}/"


def _timed_protocol(head_timeout: float, body_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol with read timeouts (uvicorn itself waits for ever, so slow
    clients could hold every connection and starve /healthz):

    * a request head (the first, and each next one on a kept-alive connection) must arrive
      whole within `head_timeout` seconds, else the connection is closed;
    * a request body must arrive whole within `body_timeout` seconds of its head, else the
      client gets 408 and the connection is closed (the route sees a disconnect).
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

    from enforcer.logs import get_logger

    log = get_logger("enforcer.serve")

    class TimedH11(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None
        _body_timer: asyncio.TimerHandle | None = None
        _timed: RequestResponseCycle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._wait_for_head()

        def handle_events(self) -> None:
            super().handle_events()
            cycle = self.cycle
            if cycle is not None and cycle is not self._timed:  # a whole head arrived
                self._timed = cycle
                self._cancel()
                if cycle.more_body:
                    self._body_timer = self.loop.call_later(
                        body_timeout, self._body_too_slow, cycle
                    )

        def on_response_complete(self) -> None:
            done = self.cycle
            super().on_response_complete()  # may start a pipelined request already
            if self.cycle is done and not self.transport.is_closing():
                self._wait_for_head()  # the next request on this kept-alive connection

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel()
            super().connection_lost(exc)

        def _wait_for_head(self) -> None:
            self._cancel()
            self._head_timer = self.loop.call_later(head_timeout, self._head_too_slow, self.cycle)

        def _cancel(self) -> None:
            for timer in (self._head_timer, self._body_timer):
                if timer is not None:
                    timer.cancel()
            self._head_timer = self._body_timer = None

        def _head_too_slow(self, waiting_after: RequestResponseCycle | None) -> None:
            self._head_timer = None
            if self.cycle is waiting_after:  # no new request head since
                self.transport.close()

        def _body_too_slow(self, cycle: RequestResponseCycle) -> None:
            self._body_timer = None
            if cycle is not self.cycle or not cycle.more_body or cycle.disconnected:
                return
            log.warning("request_body_timeout", path=cycle.scope["path"], seconds=body_timeout)
            answer = not cycle.response_started
            # The route's next receive() is a disconnect, and what it sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
            if answer:
                with contextlib.suppress(h11.LocalProtocolError):
                    headers = [(b"content-type", b"text/plain"), (b"connection", b"close")]
                    for event in (
                        h11.Response(status_code=408, headers=headers, reason=b"Request Timeout"),
                        h11.Data(data=b"the request body did not arrive in time"),
                        h11.EndOfMessage(),
                    ):
                        self.transport.write(self.conn.send(event) or b"")
            self.transport.close()

    return TimedH11


def _server(config: uvicorn.Config, app: FastAPI) -> uvicorn.Server:
    """uvicorn's server, which first lets the API's long-polls go when it stops (each answers
    "unchanged" and the device asks again): without it, every device waiting for a change got
    a 500 after the graceful timeout."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            ctx = getattr(app.state, "ctx", None)
            if ctx is not None:
                ctx.watcher.release()
            await super().shutdown(sockets)

    return Server(config)


class ServeFailed(EnforcerError):
    """The API server of `enforcer daemon --serve` could not start."""


@contextmanager
def serve_in_background(cfg: Settings, engine: Engine) -> Iterator[uvicorn.Server]:
    """Run the API server in a thread for the duration of the block, then stop it."""
    from enforcer.api import check_server_settings

    check_server_settings(cfg)
    server = make_server(cfg, engine)
    thread = threading.Thread(target=server.run, name="api-server", daemon=True)
    thread.start()
    # uvicorn ends its thread (logging the reason) when it cannot listen, a port in use: the
    # daemon must not go on reconciling without its API while systemd thinks it healthy.
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise ServeFailed(
                f"the API did not start on {cfg.server_host}:{cfg.server_port} "
                "(the log above says why: a port in use?)"
            )
        time.sleep(0.02)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
