"""The HTTP API: device enrolment, indicator sync, event upload and the admin Indicators API.

`create_app(settings, engine)` builds the application; `enforcer serve` runs it under uvicorn.
"""

from enforcer.api.app import ServerConfigError, check_server_settings, create_app
from enforcer.api.deps import ApiLimits

__all__ = ["ApiLimits", "ServerConfigError", "check_server_settings", "create_app"]
