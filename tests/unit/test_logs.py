"""Log lines: one record is one line whatever the values hold, and journald gets each level's
syslog priority."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import pytest

from ollamapy import logs

FORGED = 'x\ntime=2026-01-01T00:00:00.000+00:00 level=ERROR source=ollamapy.server msg="forged"'


def record(msg: str, *args: object, level: int = logging.INFO, **fields: object
           ) -> logging.LogRecord:
    r = logging.LogRecord("ollamapy.test", level, __file__, 1, msg, args, None)
    if fields:
        r.kv = fields
    return r


def test_values_cannot_forge_lines() -> None:
    """Newlines (and every other control character) in a model name, an option name or a
    runner's output are escaped: the record stays one line."""
    f = logs.KeyValueFormatter()
    for r in (record("unknown option %s", FORGED),
              record("loading", model=FORGED, **{FORGED: "1"}),
              record("runner says %s", "a\rb\x1b[2Jc\x00d\u2028e\x85f")):
        out = f.format(r)
        assert "\n" not in out and "\r" not in out and "\x1b" not in out, out
        assert "\x00" not in out and "\u2028" not in out and "\x85" not in out, out
        assert out.startswith("time=")
    assert '\\ntime=' in f.format(record("m %s", FORGED))
    assert "\\x1b" in f.format(record("m %s", "\x1b[2J"))


def test_quotes_and_backslashes_cannot_end_a_value_early() -> None:
    """`a\\" level=ERROR` must stay inside the value: backslashes are escaped as well."""
    out = logs.KeyValueFormatter().format(record("m", model='a\\" level=ERROR'))
    assert out.endswith('model="a\\\\\\" level=ERROR"'), out
    assert out.count("level=") == 2  # the record's own and the quoted one
    out = logs.KeyValueFormatter().format(record('say "hi" \\'))
    assert 'msg="say \\"hi\\" \\\\"' in out


def test_traceback_lines_are_marked_as_continuations() -> None:
    try:
        raise ValueError("bad\ntime=forged level=ERROR")
    except ValueError:
        import sys

        r = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    lines = logs.KeyValueFormatter().format(r).split("\n")
    assert lines[0].startswith("time=")
    assert len(lines) > 2 and all(line.startswith("    ") for line in lines[1:])


def _stderr_identity(stream: io.TextIOBase) -> str:
    st = os.fstat(stream.fileno())
    return f"{st.st_dev}:{st.st_ino}"


@pytest.mark.parametrize(("level", "prio"), [
    (logs.TRACE, 7), (logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4),
    (logging.ERROR, 3), (logging.CRITICAL, 2)])
def test_journald_gets_syslog_priorities(tmp_path: Path, level: int, prio: int) -> None:
    """Under systemd, stderr is journald's stream (JOURNAL_STREAM names it): every line starts
    with sd-daemon's `<N>` so `journalctl -p warning` finds warnings and errors."""
    with (tmp_path / "err").open("w+") as stream:
        env = {"JOURNAL_STREAM": _stderr_identity(stream)}
        assert logs.is_journal_stream(stream, env)
        handler = logs.make_handler(stream, env)
        handler.handle(record("hello", level=level))
        stream.seek(0)
        assert stream.read().startswith(f"<{prio}>time=")


def test_journald_prefix_on_every_traceback_line(tmp_path: Path) -> None:
    with (tmp_path / "err").open("w+") as stream:
        handler = logs.make_handler(stream, {"JOURNAL_STREAM": _stderr_identity(stream)})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            import sys

            handler.handle(logging.LogRecord("t", logging.ERROR, __file__, 1, "x", (),
                                             sys.exc_info()))
        stream.seek(0)
        lines = stream.read().splitlines()
    assert len(lines) > 2 and all(line.startswith("<3>") for line in lines)


def test_no_prefix_off_journald(tmp_path: Path) -> None:
    """A terminal or a file gets plain lines; so does a stderr that merely inherited
    JOURNAL_STREAM from a parent (another descriptor)."""
    with (tmp_path / "err").open("w+") as stream, (tmp_path / "other").open("w") as other:
        for env in ({}, {"JOURNAL_STREAM": _stderr_identity(other)},
                    {"JOURNAL_STREAM": "garbage"}):
            assert not logs.is_journal_stream(stream, env)
            logs.make_handler(stream, env).handle(record("hello", level=logging.WARNING))
        stream.seek(0)
        assert all(line.startswith("time=") for line in stream.read().splitlines())
