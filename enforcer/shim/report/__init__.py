"""What the shim reports: network events spooled on disk, delivered once, with the device
identity (`identity`), and the process and OS user behind an intercepted socket (`process`)."""
