"""Terminal output for `ollamapy run`: word wrap, thinking display, the --verbose stats block and
the waiting spinner (a missing model's pull is drawn by `cli/progress.py`). The decisions are
pure (text in, text out) so they can be tested without a terminal; only Spinner and the *_to
helpers touch a stream.
"""

from __future__ import annotations

import os
import sys
import threading
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from ollamapy.gofmt import duration_string, format_float

ESC = "\x1b"
COLOR_GREY = ESC + "[38;5;245m"
COLOR_BOLD = ESC + "[1m"
COLOR_DEFAULT = ESC + "[0m"
SPINNER_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


# ------------------------------------------------------------------------------- stats

def stats_block(metrics: Mapping[str, Any]) -> str:
    """Ollama's Metrics.Summary (printed to stderr after --verbose answers); zero lines omitted."""
    lines: list[str] = []
    total = int(metrics.get("total_duration") or 0)
    load = int(metrics.get("load_duration") or 0)
    pcount = int(metrics.get("prompt_eval_count") or 0)
    pdur = int(metrics.get("prompt_eval_duration") or 0)
    ecount = int(metrics.get("eval_count") or 0)
    edur = int(metrics.get("eval_duration") or 0)
    if total > 0:
        lines.append(f"total duration:       {duration_string(total)}")
    if load > 0:
        lines.append(f"load duration:        {duration_string(load)}")
    if pcount > 0:
        lines.append(f"prompt eval count:    {pcount} token(s)")
    if pdur > 0:
        lines.append(f"prompt eval duration: {duration_string(pdur)}")
        lines.append(f"prompt eval rate:     {pcount / (pdur / 1e9):.2f} tokens/s")
    if ecount > 0:
        lines.append(f"eval count:           {ecount} token(s)")
    if edur > 0:
        lines.append(f"eval duration:        {duration_string(edur)}")
        lines.append(f"eval rate:            {ecount / (edur / 1e9):.2f} tokens/s")
    return "".join(line + "\n" for line in lines)


# ------------------------------------------------------------------------------- word wrap

def char_width(ch: str) -> int:
    """Display cells of one character (go-runewidth's rule of thumb: wide/fullwidth = 2)."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def text_width(s: str) -> int:
    return sum(char_width(c) for c in s)


@dataclass
class WordWrap:
    """Ollama's displayResponse: stream text, and when a line would pass width-5 cells, move the
    word being typed to the next line (cursor back over it, clear to end of line, newline).

    `width` < 10 (or 0: not a terminal) or `enabled=False` passes text through unchanged.
    """

    width: int
    enabled: bool = True
    line_length: int = 0
    word: str = ""

    def feed(self, content: str) -> str:
        if not self.enabled or self.width < 10:
            return content
        out: list[str] = []
        limit = self.width - 5
        for ch in content:
            w = char_width(ch)
            if ch in "\n\r":
                out.append(ch)
                self.line_length, self.word = 0, ""
                continue
            if self.line_length + max(w, 1) > limit:
                if ch in " \t":  # break at the space itself: nothing to carry over
                    out.append(ESC + "[K\n")
                    self.line_length, self.word = 0, ""
                    continue
                word_w = text_width(self.word)
                if word_w > self.width - 10 or word_w == 0:
                    # No room to move the word (too long, or none): hard break here.
                    out.append("\n" + ch)
                    self.line_length = w
                    self.word = "" if w >= 2 else ch
                    continue
                out.append(f"{ESC}[{word_w}D{ESC}[K\n{self.word}{ch}")
                self.line_length = word_w + w
                self.word = "" if w >= 2 else self.word + ch
                continue
            out.append(ch)
            self.line_length += w
            if w >= 2 or ch in " \t":
                self.word = ""
            else:
                self.word += ch
        return "".join(out)

    def reset(self) -> None:
        self.line_length, self.word = 0, ""


def terminal_width(stream: TextIO | None = None) -> int:
    """Columns of the terminal behind `stream` (stdout), or 0 when it is not a terminal."""
    stream = stream or sys.stdout
    try:
        if not stream.isatty():
            return 0
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


# --------------------------------------------------------------------------------- thinking

def thinking_open(plain: bool) -> str:
    text = "Thinking...\n"
    return text if plain else COLOR_GREY + COLOR_BOLD + text + COLOR_DEFAULT + COLOR_GREY


def thinking_close(plain: bool) -> str:
    text = "...done thinking.\n\n"
    return text if plain else COLOR_GREY + COLOR_BOLD + text + COLOR_DEFAULT


@dataclass
class AnswerView:
    """Turns streamed (thinking, content) pieces into terminal text the way Ollama's chat/generate
    callbacks do: `Thinking...` header, thinking text, `...done thinking.` once content starts."""

    wrap: WordWrap
    plain: bool = False
    hide_thinking: bool = False
    thinking_open: bool = False
    thinking_closed: bool = False
    thinking_text: list[str] = field(default_factory=list)

    def feed(self, thinking: str = "", content: str = "", tool_calls: bool = False) -> str:
        out: list[str] = []
        if thinking and not self.hide_thinking:
            if not self.thinking_open:
                out.append(thinking_open(self.plain))
                self.thinking_open, self.thinking_closed = True, False
            self.thinking_text.append(thinking)
            out.append(self.wrap.feed(thinking))
        if self.thinking_open and not self.thinking_closed and (content or tool_calls):
            if not "".join(self.thinking_text).endswith("\n"):
                out.append("\n")
            out.append(thinking_close(self.plain))
            self.thinking_open, self.thinking_closed = False, True
            self.wrap.reset()
        if content:
            out.append(self.wrap.feed(content))
        return "".join(out)

    def finish(self) -> str:
        """Leave the terminal's colour as it was when an answer ended (or was cut) mid-thought."""
        if self.thinking_open and not self.thinking_closed and not self.plain:
            return COLOR_DEFAULT
        return ""


# ------------------------------------------------------------------------------- /show text

def parameters_text(model_params: str, user_options: Mapping[str, Any]) -> str:
    """`/show parameters`: the model's parameters, then the ones set in this session."""
    lines = ["Model defined parameters:"]
    if not model_params:
        lines.append("  No additional parameters were specified for this model.")
    else:
        lines += [f"  {line}" for line in model_params.split("\n")]
    lines.append("")
    if user_options:
        lines.append("User defined parameters:")
        for k, v in user_options.items():
            lines.append(f"  {k:<30} {go_value(v)}")
        lines.append("")
    return "\n".join(lines) + "\n"


def go_value(v: Any) -> str:
    """Go's %v for option values: lists as [a b], floats without a trailing .0, bools lower."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return format_float(v)
    if isinstance(v, list | tuple):
        return "[" + " ".join(go_value(x) for x in v) + "]"
    return str(v)


# ------------------------------------------------------------------------ spinner, progress

class Spinner:
    """A braille spinner on stderr while nothing else is printed (only on a terminal)."""

    def __init__(self, message: str = "", stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.message = message
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._drawn = False

    def start(self) -> Spinner:
        if self.stream.isatty():
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(0.1 if i else 0.0):
            with self._lock:
                if self._stop.is_set():
                    break
                text = f"{self.message} " if self.message else ""
                self.stream.write(f"\r{ESC}[K{text}{SPINNER_FRAMES[i % len(SPINNER_FRAMES)]}")
                self.stream.flush()
                self._drawn = True
            i += 1

    def stop(self) -> None:
        """Stop and erase the spinner line; safe to call more than once."""
        if self._stop.is_set():
            return
        with self._lock:
            self._stop.set()
            if self._drawn:
                self.stream.write(f"\r{ESC}[K")
                self.stream.flush()
        if self._thread is not None:
            self._thread.join(timeout=1)
