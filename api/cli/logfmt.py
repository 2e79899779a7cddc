"""`--log-format json`: one JSON object per log line, for collectors that parse logs (Loki, journald, ELK).

Stable keys, always present: `time` (UTC, ISO 8601 with milliseconds), `level`, `logger`, `event` (the
formatted message). When a record carries them as `extra` — `log.info("...", extra={"gateway": gid})` —
`gateway`, `rule`, `subject`, `plant`, `enterprise` and any other JSON-able attribute follow; an exception
adds `exc` (its traceback as text). The message is formatted by the logger, so it never holds more than a
plain line does (secrets are redacted where they are logged, not here).
"""

from __future__ import annotations

import io
import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, TextIO, cast

__all__ = ["FORMATS", "JsonFormatter", "configure"]

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Attributes every LogRecord has: not `extra`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime",
                                                                                 "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_") or key in out:
                continue
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                value = repr(value)
            out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class JsonLines(io.TextIOBase):
    """A text stream that writes each complete line it is given as a JSON log object (logger `riskwatch.cli`).

    The CLI's status lines (`collector: … -> database`, `ready …`) go through the `err` console; in json mode
    its file is this stream, so stderr holds nothing but JSON objects, one per line.
    """

    def __init__(self, out: TextIO, logger: str = "riskwatch.cli"):
        self._out, self._logger, self._buf = out, logger, ""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self._buf += s
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            if line.strip():
                first = line.split(maxsplit=1)[0].lower()
                level = first if first in ("error", "warning") else "info"
                self._out.write(json.dumps({"time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                                            "level": level, "logger": self._logger, "event": line.rstrip()},
                                           ensure_ascii=False) + "\n")
        self._out.flush()
        return len(s)

    def isatty(self) -> bool:
        return False


def configure(level: int, fmt: str) -> None:
    """Set up the root logger; with `json`, uvicorn's own loggers (serve) write JSON lines too.

    uvicorn installs its handlers from `uvicorn.config.LOGGING_CONFIG` when `serve` starts it; the formatters
    there are switched in place so its "started" and error lines are JSON as well, without a second
    logging configuration in the composition root.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    if fmt == "json":
        from api.cli.context import err

        err.file = cast(IO[str], JsonLines(sys.stderr))
        try:
            from uvicorn.config import LOGGING_CONFIG
        except ImportError:  # pragma: no cover - uvicorn is a dependency of serve
            return
        for name in LOGGING_CONFIG.get("formatters", {}):
            LOGGING_CONFIG["formatters"][name] = {"()": f"{__name__}.JsonFormatter"}
