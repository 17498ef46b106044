"""Structured, journald-friendly logging to stderr: `time=... level=... source=... msg="..." k=v`,
the same key=value shape Ollama's slog output has.

One record is one line: every logged value (model names, option names, runner output) has its
control characters escaped, so no value can forge a log line. Under systemd, each line starts
with sd-daemon's `<N>` syslog priority, so `journalctl -p warning` sees warnings and errors.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import TextIO

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

# sd-daemon(3) priorities: <7> debug, <6> info, <4> warning, <3> err, <2> crit.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
               (logging.INFO, 6))
_CONTROL_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_QUOTE_ESCAPES = {**_CONTROL_ESCAPES, "\\": "\\\\", '"': '\\"'}


def syslog_priority(level: int) -> int:
    for floor, prio in _PRIORITIES:
        if level >= floor:
            return prio
    return 7


def _escape_char(c: str, table: Mapping[str, str]) -> str:
    short = table.get(c)
    if short is not None:
        return short
    if c.isprintable() or c == " ":
        return c
    code = ord(c)  # C0/C1 controls, DEL, line/paragraph separators, other unprintables
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """Go strconv.Quote's rules without the quotes: backslash, quote and every unprintable
    character escaped; printable non-ASCII kept as is."""
    if text.isprintable() and "\\" not in text and '"' not in text:
        return text
    return "".join(_escape_char(c, _QUOTE_ESCAPES) for c in text)


def escape_controls(text: str) -> str:
    """Only the unprintable characters escaped (traceback text, which is not quoted)."""
    if text.isprintable():
        return text
    return "".join(_escape_char(c, _CONTROL_ESCAPES) for c in text)


def _value(v: object) -> str:
    text = str(v)
    esc = escape(text)
    if not text or esc != text or any(c in text for c in " ="):
        return f'"{esc}"'
    return text


def _key(k: str) -> str:
    """Keys come from code, but never let one break the line or the k=v shape."""
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in k) or "_"


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")
        msg = escape(record.getMessage())
        line = (f'time={ts} level={record.levelname} source={record.name} msg="{msg}"')
        extra = getattr(record, "kv", None)
        if extra:
            for k, v in extra.items():
                line += f" {_key(str(k))}={_value(v)}"
        if record.exc_info:
            # Continuation lines are indented: a line that starts with `time=` is a record.
            for tb_line in self.formatException(record.exc_info).splitlines():
                line += "\n    " + escape_controls(tb_line)
        return line


class JournalFormatter(KeyValueFormatter):
    """Each physical line gets the record's `<N>` priority prefix (journald reads it per line)."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def is_journal_stream(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """systemd sets JOURNAL_STREAM=<dev>:<inode> of the stream it connected; a child that
    inherited the variable but writes elsewhere must not add prefixes (systemd.exec(5))."""
    want = environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in want.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):  # io.UnsupportedOperation is both
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def make_handler(stream: TextIO, environ: Mapping[str, str]) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter() if is_journal_stream(stream, environ)
                         else KeyValueFormatter())
    return handler


def setup(debug_level: int) -> None:
    level = logging.INFO if debug_level <= 0 else (logging.DEBUG if debug_level == 1 else TRACE)
    handler = make_handler(sys.stderr, os.environ)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Requests are logged by server/access.py (aiohttp's own access log is off in serve.py).


def kv(**fields: object) -> dict[str, dict[str, object]]:
    """`log.info("msg", extra=kv(a=1))` -> `msg="msg" a=1`."""
    return {"kv": fields}
