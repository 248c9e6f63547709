"""Pure decisions: an observed snapshot and `now` in, a plan out.

Imports only the standard library, pydantic and cardpool.api: no kopf, no kubernetes client, no clock, no
unseeded randomness (enforced by the import-linter contracts in pyproject.toml).
"""
