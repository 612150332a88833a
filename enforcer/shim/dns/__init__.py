"""The shim's DNS front end: the answer chain (`answer`), its cache (`cache`), the upstream
resolvers (`upstream`), the UDP/TCP sockets (`server`) and the hand-written wire format (`wire`)."""
