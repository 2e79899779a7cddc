"""The composition root: what builds the parts of a process and runs them together.

- `settings`   settings and the clock, built once at start-up (light: the CLI imports it)
- `compose`    the rule catalog, the rule engine, the collector and the dispatcher, injected
- `serve`      `riskwatch serve`: the HTTP app, the collector, the hazards tick and alerting, supervised
- `collect`    `riskwatch collect` and `riskwatch alerting dispatch`: one stage alone
- `demo`       `riskwatch demo`: the sample site's incident, end to end, on the private services
- `supervisor` named background tasks restarted with backoff
- `simcreds`   the simulator's gateway credentials on the private services

Submodules are imported by their callers (nothing heavy is loaded by importing the package).
"""

__all__ = ["collect", "compose", "demo", "serve", "settings", "simcreds", "supervisor"]
