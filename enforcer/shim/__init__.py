"""The endpoint shim: enforces the indicator set on a device through its DNS and proxy front ends.

Each front end turns packets or requests into `enforcer.matcher.Matcher` calls and back:
`enforcer.shim.dns` is the DNS sinkhole, `enforcer.shim.tls` reads the server name a TLS client
asks for.
"""
