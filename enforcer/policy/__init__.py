"""Policy-as-code: what an organisation decides about cloud apps, in YAML files it keeps in git.

`schema` is the file format (pydantic models, and the JSON Schema editors use); `loader` reads a
policy directory into one `PolicySet`, every entry with its file and line, and digests it;
`evaluate` checks the set against the catalog and decides each app's tag in each scope
(`compile_policy` -> `SanctionState`). docs/policy.md describes the format.
"""
