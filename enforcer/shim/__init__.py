"""The endpoint shim: enforces the indicator set on a device through its DNS and proxy front ends.

`agent` wires one asyncio loop: the DNS front end (`dns`), the HTTP/CONNECT proxy (`proxy`), both
reading one `enforcer.decide.matcher.Matcher` and mapping its verdicts to events the same way
(`verdict`); the sync client (`sync`, with its on-disk `indicator_cache`) that keeps the matcher
current, parsing the server's answers in steps between DNS answers (`piecewise_json`); the
event reporter (`report`); Linux traffic interception (`intercept`); and the Prometheus
metrics of a running shim (`prometheus`).
"""
