"""The one progress display of the CLI: `pull`, `push`, `create` and `run` (pulling a missing
model) all draw through ProgressView, laid out like Ollama's progress package.

Ollama draws a block on stderr that is redrawn in place: one spinner line per status message
(`pulling manifest ⠋`) and one bar per digest (`pulling 2af3b81862c6:  45% ▕████   ▏  45 MB/100 MB
5.0 MB/s  11s`; once finished just `100% ▕█████▏ 100 MB`). When stderr is not a terminal each
line is printed once, when it is final, so logs stay readable. Imports stay light: no server code.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

from ollamapy.cli.format import human_bytes
from ollamapy.inference.jsontypes import JsonObject

SPINNER = ("⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏")
ESC = "\x1b"


def _pad(s: str, width: int) -> str:
    return " " * (width - len(s)) + s


def format_duration(seconds: float) -> str:
    """Ollama's progress formatDuration: '99h+', '1h5m', else Go's Duration rounded to a second
    ('59m59s', '11s', '0s')."""
    s = int(seconds + 0.5)
    if s >= 100 * 3600:
        return "99h+"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60}m"
    if s >= 60:
        return f"{s // 60}m{s % 60}s"
    return f"{s}s"


def render_bar(message: str, current: int, total: int, rate: float, width: int,
               stopped: bool) -> str:
    """One bar line, laid out exactly like Ollama's progress.Bar.String()."""
    pct = current / total * 100 if total > 0 else 0.0
    pre = (f"{message.strip()} " if message else "") + f"{pct:3.0f}%"
    if not stopped:
        suf = _pad(human_bytes(current), 6) + "/" + _pad(human_bytes(total), 6)
    else:
        suf = _pad(human_bytes(total), 6) + " " * 7
    if not stopped and rate > 0:
        suf += "  " + _pad(human_bytes(int(rate)), 6) + "/s"
        remaining = int((total - current) / rate)
        suf += "  " + _pad(format_duration(remaining), 6)
    else:
        suf += " " * 10 + " " * 8
    f = width - len(pre) - len(suf) - 5
    n = int(f * pct / 100)
    return pre + " ▕" + "█" * max(n, 0) + " " * max(f - n, 0) + "▏ " + suf


@dataclass
class Bar:
    message: str
    total: int
    initial: int
    current: int = 0
    started: float = field(default_factory=time.monotonic)
    stopped: float | None = None
    buckets: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.current = self.initial
        if self.initial >= self.total:
            self.stopped = self.started

    def set(self, value: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        value = min(value, self.total)
        self.current = value
        if value >= self.total and self.stopped is None:
            self.stopped = now
        if not self.buckets or now - self.buckets[-1][0] > 1.0:  # one sample a second, last 10
            self.buckets = [*self.buckets, (now, value)][-10:]

    def rate(self) -> float:
        """Bytes/s over the last ~10 s (Ollama's bucketed rate)."""
        if self.stopped is not None:
            num, den = self.current - self.initial, round(self.stopped - self.started)
        elif len(self.buckets) == 1:
            num, den = self.buckets[0][1] - self.initial, round(self.buckets[0][0] - self.started)
        elif self.buckets:
            (t0, v0), (t1, v1) = self.buckets[0], self.buckets[-1]
            num, den = v1 - v0, round(t1 - t0)
        else:
            return 0.0
        return num / den if den else 0.0

    def render(self, width: int) -> str:
        return render_bar(self.message, self.current, self.total, self.rate(), width,
                          self.stopped is not None)


@dataclass
class Spinner:
    message: str
    frame: int = 0
    stopped: bool = False
    final: bool = True  # False while the message still changes (`copying file ... 42%`)

    def render(self, width: int) -> str:
        if self.stopped:
            return f"{self.message} "
        self.frame = (self.frame + 1) % len(SPINNER)
        return f"{self.message} {SPINNER[self.frame]} "


class ProgressView:
    """Feeds ProgressResponse objects into spinners and bars (cmd.PullHandler/PushHandler/
    CreateHandler). `verb` picks the bar labels: "pulling", "pushing", or anything else for
    create's (the message's own status)."""

    def __init__(self, verb: str, stream: TextIO | None = None, tty: bool | None = None,
                 width: int | None = None) -> None:
        self.verb = verb
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.width = width
        self.states: dict[str, Bar | Spinner] = {}
        self.status = ""
        self.spinner: Spinner | None = None
        self._printed: set[str] = set()
        self._drawn = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.tty:
            self.stream.write(f"{ESC}[?25l")  # hide the cursor while drawing
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def _width(self) -> int:
        return self.width or shutil.get_terminal_size((80, 24)).columns

    def update(self, msg: JsonObject) -> None:
        with self._lock:
            digest = msg.get("digest") or ""
            if digest:
                completed, total = int(msg.get("completed") or 0), int(msg.get("total") or 0)
                if completed == 0 and self.verb == "pulling":
                    return  # the announce-the-size message: Ollama skips it (no 0% bars)
                if self.spinner is not None:
                    self.spinner.stopped = True
                bar = self.states.get(digest)
                if not isinstance(bar, Bar):
                    short = digest.removeprefix("sha256:")[:12]
                    if self.verb == "pulling":
                        label = f"pulling {short}:"
                    elif self.verb == "pushing":
                        label = f"pushing {short}..."
                    else:
                        label = str(msg.get("status") or f"pulling {short}...")
                    bar = Bar(label, total, completed)
                    self.states[digest] = bar
                bar.set(completed)
            elif msg.get("status") and msg["status"] != self.status:
                if self.spinner is not None:
                    self.spinner.stopped = True
                self.status = str(msg["status"])
                self.spinner = Spinner(self.status)
                self.states[f"status:{self.status}:{len(self.states)}"] = self.spinner
            self._render()

    def spin(self, key: str, message: str, done: bool = False) -> None:
        """A spinner line whose message changes (create's `copying file <digest> 42%`); without
        a terminal it is printed once, when done."""
        with self._lock:
            state = self.states.get(key)
            if not isinstance(state, Spinner):
                if self.spinner is not None:
                    self.spinner.stopped = True
                state = Spinner(message, final=False)
                self.states[key] = state
            state.message = message
            if done:
                state.stopped = state.final = True
            self._render()

    def _render(self) -> None:
        if not self.tty:
            for key, state in self.states.items():
                final = state.final if isinstance(state, Spinner) else state.stopped is not None
                if final and key not in self._printed:
                    self._printed.add(key)
                    line = state.message if isinstance(state, Spinner) else \
                        state.render(self._width())
                    self.stream.write(line.rstrip() + "\n")
            self.stream.flush()
            return
        width = self._width()
        out = f"{ESC}[{self._drawn}A" if self._drawn else ""
        for state in self.states.values():
            out += f"\r{ESC}[K{state.render(width)}\n"
        self._drawn = len(self.states)
        self.stream.write(out)
        self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(0.1):
            with self._lock:
                if self.states:
                    self._render()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(1)
        with self._lock:
            if self.spinner is not None:
                self.spinner.stopped = True
            for state in self.states.values():
                if isinstance(state, Bar) and state.stopped is None:
                    state.stopped = time.monotonic()
                elif isinstance(state, Spinner):
                    state.stopped = state.final = True
            if self.states:
                self._render()
            if self.tty:
                self.stream.write(f"{ESC}[?25h")
            self.stream.flush()
