"""The proxy auto-config (PAC) file the shim serves at ``/proxy.pac`` on the proxy's own port.

For hosts where interception is not wanted: point the system's or the browser's "automatic
proxy configuration URL" at ``http://127.0.0.1:3128/proxy.pac`` and every web request of the
programs that honour it goes through the shim's proxy, loopback and plain host names excepted.

By default the answer ends in ``; DIRECT``: a browser whose shim is not running goes direct
(fail-open, so a stopped shim does not stop the web). ``/proxy.pac?fallback=none`` leaves
DIRECT out: without the shim, nothing but loopback loads (fail-closed).
"""

from __future__ import annotations

CONTENT_TYPE = "application/x-ns-proxy-autoconfig"
_TEMPLATE = """\
// Enforcer shim: web traffic goes through the shim's proxy on this machine.
function FindProxyForURL(url, host) {
  if (isPlainHostName(host) || host === "localhost" || shExpMatch(host, "127.*") ||
      host === "::1" || host === "[::1]") {
    return "DIRECT";
  }
  return "%s";
}
"""


def pac_file(host: str, port: int, *, fallback_direct: bool = True) -> bytes:
    """The PAC script sending everything but loopback to the proxy at (host, port)."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    answer = f"PROXY {address}; DIRECT" if fallback_direct else f"PROXY {address}"
    return (_TEMPLATE % answer).encode("ascii")
