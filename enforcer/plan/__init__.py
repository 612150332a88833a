"""Plans as data: `model` (Plan, Change, what reconcile read), `digest` (per-bucket digests that
let a no-op plan skip the store), `planfile` (the saved plan file) and `render` (text, JSON,
Markdown)."""
