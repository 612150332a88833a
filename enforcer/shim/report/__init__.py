"""What the shim reports: network events spooled on disk, delivered once, with the device identity."""
