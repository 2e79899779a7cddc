"""The `riskwatch` command line (console script `riskwatch = "api.cli:main"`).

`main.py` builds the Typer app and registers the groups; `context.py` is what they share; each other
module is one command group. Commands dispatch to the composition root (`api.run`) to run parts.
"""

from api.cli.main import app, main

__all__ = ["app", "main"]
