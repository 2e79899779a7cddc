"""Shared foundations: settings, database, migrations, registry, clock, errors, local services.

Nothing here imports another top-level riskwatch package.
"""
