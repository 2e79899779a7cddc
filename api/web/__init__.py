"""The console (值班台 and 企业端): server-rendered pages for people, next to the HTTP API for machines.

Mount it on the HTTP app: `app.mount(PREFIX, create_console(ctx))`. See docs/console.md.
"""

from api.web.app import PREFIX, create_console

__all__ = ["PREFIX", "create_console"]
