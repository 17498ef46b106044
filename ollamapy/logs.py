"""Structured, journald-friendly logging to stderr: `time=... level=... source=... msg="..." k=v`,
the same key=value shape Ollama's slog output has."""

from __future__ import annotations

import logging
import sys
from datetime import datetime

TRACE = 5
logging.addLevelName(TRACE, "TRACE")


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")
        msg = record.getMessage().replace('"', '\\"')
        line = (f'time={ts} level={record.levelname} source={record.name} msg="{msg}"')
        extra = getattr(record, "kv", None)
        if extra:
            for k, v in extra.items():
                text = str(v)
                if not text or any(c in text for c in ' "='):
                    text = '"' + text.replace('"', '\\"') + '"'
                line += f" {k}={text}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup(debug_level: int) -> None:
    level = logging.INFO if debug_level <= 0 else (logging.DEBUG if debug_level == 1 else TRACE)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log is noisy at INFO; keep it for debug runs (Ollama logs requests as GIN).
    logging.getLogger("aiohttp.access").setLevel(logging.INFO if debug_level else logging.WARNING)


def kv(**fields: object) -> dict[str, dict[str, object]]:
    """`log.info("msg", extra=kv(a=1))` -> `msg="msg" a=1`."""
    return {"kv": fields}
