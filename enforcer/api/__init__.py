"""The HTTP API: device enrolment, indicator sync, event upload and the admin Indicators API.

Modules: `app` (the application factory `create_app`), `deps` (the context and who is calling),
`routers/` (one module per route group), `sync_answers` (snapshots and deltas for ``/sync``),
`sync_cache` (answers rendered once, kept in memory or a file, sent to every device asking),
`watcher` (the long-poll revision watcher), `problems` (errors as problem details), `body_limit`
(request-body size), `ratelimit` (token buckets per address and per device) and `groups` (the
server's rules for device groups). `enforcer.webapp` adds the
web console to what `create_app` returns; `enforcer serve` runs that under uvicorn.
"""

from enforcer.api.app import ServerConfigError, check_server_settings, create_app
from enforcer.api.deps import ApiLimits

__all__ = ["ApiLimits", "ServerConfigError", "check_server_settings", "create_app"]
