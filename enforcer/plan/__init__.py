"""Plans as data: the `Plan`/`Change` model, its digests, the saved plan file, and renderers."""
