"""A stand-in for Grafana's HTTP API, on 127.0.0.1, for `riskwatch grafana push` tests.

Grafana itself cannot run on this machine (no Grafana package or image can be
installed here), so this server implements just the endpoints `grafana push`
calls, with Grafana's behaviour where it matters: bearer-token
auth (401 otherwise), 404 for a missing folder, 409 for a folder uid that
exists, dashboards saved by uid into an existing folder, 412 when a dashboard
with that uid exists and ``overwrite`` is false, version bumped on each save.
It is a fake at a true boundary; everything on our side is the real code.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeGrafana:
    def __init__(self, token: str):
        self.token = token
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}  # uid -> {"dashboard", "folderUid", "version"}
        self.requests: list[tuple[str, str]] = []
        self._next_id = 1
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-grafana", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeGrafana:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    # --- API ------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        with self._lock:
            self.requests.append((method, path))
            if method == "GET" and path == "/api/health":
                return 200, {"database": "ok", "version": "11.6.0"}
            if m := re.fullmatch(r"/api/folders/([^/?]+)", path):
                uid = m.group(1)
                if method == "GET":
                    f = self.folders.get(uid)
                    return (200, f) if f else (404, {"message": "folder not found", "status": "not-found"})
                if method == "PUT":
                    f = self.folders.get(uid)
                    if f is None:
                        return 404, {"message": "folder not found"}
                    if not body.get("overwrite") and body.get("version") != f["version"]:
                        return 412, {"message": "the folder has been changed by someone else"}
                    f.update(title=body.get("title", f["title"]), version=f["version"] + 1)
                    return 200, f
            if method == "POST" and path == "/api/folders":
                uid = body.get("uid") or f"f{self._id()}"
                if uid in self.folders:
                    return 409, {"message": "a folder with the same uid already exists"}
                self.folders[uid] = {"id": self._id(), "uid": uid, "title": body["title"], "version": 1,
                                     "url": f"/dashboards/f/{uid}/"}
                return 200, self.folders[uid]
            if method == "POST" and path == "/api/dashboards/db":
                dash = body.get("dashboard") or {}
                uid = dash.get("uid")
                folder = body.get("folderUid")
                if not uid or not dash.get("title"):
                    return 400, {"message": "dashboard uid and title required"}
                if folder and folder not in self.folders:
                    return 400, {"message": "folder not found"}
                old = self.dashboards.get(uid)
                if old and not body.get("overwrite") and dash.get("version") != old["version"]:
                    return 412, {"message": "the dashboard has been changed by someone else",
                                 "status": "version-mismatch"}
                version = (old["version"] + 1) if old else 1
                db_id = old["id"] if old else self._id()
                self.dashboards[uid] = {"id": db_id, "dashboard": {**dash, "id": db_id, "version": version},
                                        "folderUid": folder, "version": version}
                return 200, {"id": db_id, "uid": uid, "url": f"/d/{uid}/x", "status": "success",
                             "version": version, "slug": "x"}
            if method == "GET" and (m := re.fullmatch(r"/api/dashboards/uid/([^/?]+)", path)):
                d = self.dashboards.get(m.group(1))
                if d is None:
                    return 404, {"message": "Dashboard not found"}
                return 200, {"dashboard": d["dashboard"], "meta": {"folderUid": d["folderUid"]}}
            return 404, {"message": f"fake grafana: no route {method} {path}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    status, payload = 401, {"message": "Unauthorized"}
                else:
                    try:
                        body = json.loads(raw) if raw else {}
                    except ValueError:
                        status, payload = 400, {"message": "bad json"}
                    else:
                        status, payload = fake.handle(self.command, self.path.split("?")[0], body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler
