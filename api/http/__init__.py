"""The HTTP face: the FastAPI app, its routers, schemas, queries, auth and middleware.

`create_app(settings, ...)` builds the application; nothing is created at import time. The
composition root (`api.run`) passes it the clock, the metrics and the health checks of the tasks
it runs next to the app.
"""

from api.http.app import create_app
from api.http.health import Check
from api.http.metrics import Metrics, StatsExporter

__all__ = ["Check", "Metrics", "StatsExporter", "create_app"]
