"""Sinks: an indicator set pushed to enforcement points Enforcer does not run itself.

One module per sink (`rpz`, `hosts`, `dnsmasq`: files a resolver reads, written by `_files`;
`defender`: the Defender for Endpoint Indicators API), each with ``plan(desired, revision,
settings) -> SinkPlan`` and ``apply(plan, settings) -> SinkResult`` (the interface is in
`enforcer.sinks.base`). `SINKS` names them; `get_sink` imports one when it is used, so naming
the sinks costs no import of HTTP clients. Adding a sink is one module and one name in `SINKS`.

Sinks never read the store: `enforcer.pipeline.run` reads it, plans and applies them (the daemon
after every store revision, the CLI on demand).
"""

from __future__ import annotations

import importlib
from typing import cast

from enforcer.sinks.base import Sink, SinkChange, SinkError, SinkPlan, SinkResult

__all__ = ["SINKS", "Sink", "SinkChange", "SinkError", "SinkPlan", "SinkResult", "get_sink"]

SINKS: tuple[str, ...] = ("rpz", "hosts", "dnsmasq", "defender")
"""Every sink, by name; sink ``name`` is the module ``enforcer.sinks.<name>``."""


def get_sink(name: str) -> Sink:
    """The sink module called `name`, or a `SinkError` listing the known ones."""
    if name not in SINKS:
        raise SinkError(f"unknown sink {name!r}; known sinks: {', '.join(SINKS)}")
    return cast(Sink, importlib.import_module(f"{__name__}.{name}"))
