"""`python -m enforcer` runs the CLI."""

from enforcer.cli import main

main()
