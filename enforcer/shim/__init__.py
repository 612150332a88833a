"""The endpoint shim: enforces the indicator set on a device through its DNS and proxy front ends.

Each front end turns packets or requests into `enforcer.decide.matcher.Matcher` calls and back:
`enforcer.shim.dns.server` is the DNS sinkhole, `enforcer.shim.proxy.tls` reads the server name a TLS client
asks for.
"""
