"""Small query modules for the API: registry, readings and alarms, each scoped to the caller's enterprise.

Route handlers hold no SQL; they call these, `hazards`, `rules.actions` or `core.registry`.
"""
