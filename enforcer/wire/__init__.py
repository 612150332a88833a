"""The shapes the server and the shim exchange, defined once: `limits` (field lengths),
`indicators` (Defender's indicator fields, sync entries and bodies), `events` (event uploads),
`enrolment` (enrol request and answer) and `base` (the camelCase model base).

Both processes import these models; the store rows, the API schemas and the shim's cache convert
from them. Only `enforcer.models` is imported from Enforcer, so every layer may depend on it.
"""
