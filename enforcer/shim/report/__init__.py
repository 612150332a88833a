"""What the shim reports: network events spooled on disk (`spool`), delivered once (`reporter`),
with the device identity (`identity`; its changes reported to the server by `facts`), and the
process and OS user behind an intercepted socket (`process`)."""
