"""The shim's HTTP front end: the forward/CONNECT proxy, TLS SNI reading, block and warn pages, bypasses."""
