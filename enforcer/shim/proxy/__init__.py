"""The shim's HTTP front end: the forward/CONNECT proxy (`frontend`), its HTTP/1.1 framing
(`http1`), byte relay (`relay`), TLS SNI reading (`tls`), block and warn pages with the bypass
flow (`warn`, `pages`, `bypass`) and desktop notifications (`notify`)."""
