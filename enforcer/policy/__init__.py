"""Policy-as-code: the file format (schema), the loader (YAML with line numbers) and evaluation."""
