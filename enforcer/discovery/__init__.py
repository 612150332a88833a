"""Cloud Discovery: which cloud apps the network uses, learned from firewall, proxy and monitor
logs and from the shims' network events.

- Input: `reader` streams a file (gzip or not) into lines, `syslog` receives lines pushed by
  devices, `formats` turns lines into `Record`s or `BadLine`s (`records`).
- Rollup: `attribute` names the app (or unrecognised domain) of a host, `aggregate` sums records
  into a `enforcer.rollup.Rollup`, `fused` does parse and aggregate in one loop for Squid and
  Zeek; `ingest` drives an upload and `continuous` rolls up the devices' events and raises alerts.
- Reports: `reports` (apps, domains, machines, users, impact; CSV and JSON) and `device_risk`.
"""

from enforcer.discovery.records import BadLine, FormatError, Record

__all__ = ["BadLine", "FormatError", "Record"]
