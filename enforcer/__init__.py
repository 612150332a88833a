"""Enforcer: open Shadow-IT discovery and cloud-app enforcement.

The data path::

    policies/*.yaml -> policy -> decide.expand -> decide.reconcile (a plan.Plan) -> store
        ^ catalog        store -> api (sync, wire shapes) -> shim (DNS, proxy) -> events
                         store -> sinks (rpz, hosts, dnsmasq, Defender)         -> discovery

The packages, from the edges down (pyproject.toml's import contracts keep this order):
`cli` (the `enforcer` command); `webapp`, `api`, `console` (the server: HTTP API and web console,
independent of each other, sharing `web`) and `shim` (the endpoint agent, which talks to the
server over HTTP only); `pipeline` (policy -> store -> sinks, and the daemon that schedules it);
`sinks` and `discovery` (Cloud Discovery: logs and events into rollups and reports); `store`
(every SQL statement); `decide` (pure decisions: expansion, reconciliation, the matcher); `plan`
(plans as data) and `policy` (policy files); `catalog` (the cloud apps); and the vocabulary every
layer may use: `wire` (what server and shim exchange), `rollup`, `gcpause`, `models`, `errors`,
`config` (settings) and `logs`.
"""

__version__ = "0.1.0"
