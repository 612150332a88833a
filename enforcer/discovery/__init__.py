"""Cloud Discovery: which cloud apps the network uses, learned from firewall, proxy and monitor logs.

This package starts at the log-format layer: `formats` turns lines of a supported log into
`Record`s (one connection or request each) or `BadLine`s, `reader` streams a file (gzip or not)
into lines, and `syslog` receives the same lines pushed by devices over syslog.
"""

from enforcer.discovery.records import BadLine, FormatError, Record

__all__ = ["BadLine", "FormatError", "Record"]
