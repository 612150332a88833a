"""The shim's DNS front end: the UDP/TCP server, the answer chain, the cache, upstreams, wire format."""
