"""Sinks: an indicator set pushed to enforcement points Enforcer does not run itself.

One module per sink (`rpz`, `hosts`, `dnsmasq`: files a resolver reads, written by `_files`;
`defender`: the Defender for Endpoint Indicators API), each with ``plan(desired, revision,
settings) -> SinkPlan`` and ``apply(plan, settings) -> SinkResult``; `base` holds that interface
and `get_sink`, which imports a sink's module when it is used. `SINKS` names them, and is all
this package module holds, so that listing the sinks (``enforcer --help``) imports nothing else.
Adding a sink is one module and one name in `SINKS`.

Sinks never read the store: `enforcer.pipeline.run` reads it, plans and applies them (the daemon
whenever the store's revision moves, the CLI on demand).
"""

SINKS: tuple[str, ...] = ("rpz", "hosts", "dnsmasq", "defender")
"""Every sink, by name; sink ``name`` is the module ``enforcer.sinks.<name>``."""
