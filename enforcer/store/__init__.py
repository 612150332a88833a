"""Indicator store: tables, engine, migrations, reads and atomic plan apply."""
