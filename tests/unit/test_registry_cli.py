"""The pull/push progress display: Ollama's bar layout, durations, and what lands on stderr."""

from __future__ import annotations

import io

import pytest

from ollamapy.cli.progress import Bar, ProgressView, format_duration, render_bar
from ollamapy.cli.registry import destination

D1 = "sha256:" + "2af3b81862c6" + "0" * 52
D2 = "sha256:" + "34bb5ab01051" + "1" * 52


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (11, "11s"), (59.6, "1m0s"),
                                           (3599, "59m59s"), (3600, "1h0m"),
                                           (5 * 3600 + 65, "5h1m"), (100 * 3600, "99h+")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_running_bar_layout() -> None:
    line = render_bar("pulling 2af3b81862c6:", 45_000_000, 100_000_000, 5_000_000, 100, False)
    assert line == ("pulling 2af3b81862c6:  45% ▕" + "█" * 17 + " " * 21 + "▏ "
                    + " 45 MB/100 MB" + "    5 MB/s" + "     11s")
    assert len(line) == 100 - 1  # Go counts the two box characters as 3 bytes each


def test_finished_bar_layout() -> None:
    line = render_bar("pulling 2af3b81862c6:", 100, 100, 7, 80, True)
    assert line.startswith("pulling 2af3b81862c6: 100% ▕█")
    assert line.endswith("█▏ " + " 100 B" + " " * 7 + " " * 18)


def test_bar_without_rate_has_no_eta() -> None:
    line = render_bar("", 0, 10, 0.0, 60, False)
    assert line.startswith("  0% ▕") and line.endswith("   0 B/  10 B" + " " * 18)


def test_bar_rate_uses_recent_samples() -> None:
    b = Bar("x", 1000, 0, started=0.0)
    b.set(100, now=1.5)
    b.set(300, now=3.0)
    b.set(350, now=3.5)  # within a second of the last sample: not sampled
    assert b.rate() == pytest.approx(200 / 2)
    b.set(1000, now=10.0)
    assert b.stopped == 10.0 and b.rate() == pytest.approx(100)


def test_pull_view_without_a_terminal_prints_final_lines_once() -> None:
    out = io.StringIO()
    view = ProgressView("pulling", stream=out, tty=False, width=80)
    for msg in [{"status": "pulling manifest"},
                {"status": "pulling 2af3b81862c6", "digest": D1, "total": 1000},  # 0: skipped
                {"status": "pulling 2af3b81862c6", "digest": D1, "total": 1000, "completed": 10},
                {"status": "pulling 2af3b81862c6", "digest": D1, "total": 1000,
                 "completed": 1000},
                {"status": "pulling 34bb5ab01051", "digest": D2, "total": 5, "completed": 5},
                {"status": "verifying sha256 digest"}, {"status": "writing manifest"},
                {"status": "success"}]:
        view.update(msg)
    view.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "pulling manifest"
    assert lines[1].startswith("pulling 2af3b81862c6: 100% ▕") and lines[1].endswith(" 1 KB")
    assert lines[2].startswith("pulling 34bb5ab01051: 100% ▕") and lines[2].endswith("5 B")
    assert lines[3:] == ["verifying sha256 digest", "writing manifest", "success"]


def test_push_view_labels_and_unfinished_bars_on_error() -> None:
    out = io.StringIO()
    view = ProgressView("pushing", stream=out, tty=False, width=80)
    view.update({"status": "retrieving manifest"})
    view.update({"status": "pushing 2af3b81862c6", "digest": D1, "total": 1000})
    view.update({"status": "pushing 2af3b81862c6", "digest": D1, "total": 1000,
                 "completed": 500})
    view.close()  # e.g. the stream ended with an error: the bar is still drawn once
    lines = out.getvalue().splitlines()
    assert lines[0] == "retrieving manifest"
    assert lines[1].startswith("pushing 2af3b81862c6...  50% ▕")


def test_terminal_view_redraws_in_place() -> None:
    out = io.StringIO()
    view = ProgressView("pulling", stream=out, tty=True, width=60)
    view.update({"status": "pulling manifest"})
    view.update({"status": "pulling 2af3b81862c6", "digest": D1, "total": 10, "completed": 5})
    view.update({"status": "pulling 2af3b81862c6", "digest": D1, "total": 10, "completed": 10})
    view.close()
    text = out.getvalue()
    assert text.startswith("\x1b[?25l") and text.endswith("\x1b[?25h")
    assert "\x1b[2A" in text  # back over the two lines drawn before
    assert "pulling manifest ⠙" in text or "pulling manifest ⠹" in text


@pytest.mark.parametrize("model, where", [
    ("llama3", "https://ollama.com/llama3"),
    ("me/m:v1", "https://ollama.com/me/m:v1"),
    ("registry.ollama.ai/me/m", "https://ollama.com/me/m"),
    ("127.0.0.1:5000/me/m", "127.0.0.1:5000/me/m:latest"),
    ("hf.co/u/r:Q4_K_M", "hf.co/u/r:Q4_K_M"),
])
def test_push_destination(model: str, where: str) -> None:
    assert destination(model) == where


def test_create_view_copying_line_and_status_labelled_bars() -> None:
    """create draws through the same display: `copying file` changes in place and is printed
    once, at 100%, without a terminal; a digest bar is labelled with the message's status."""
    out = io.StringIO()
    view = ProgressView("creating", stream=out, tty=False, width=80)
    view.update({"status": "gathering model components"})
    for pct in (0, 40, 100):
        view.spin(f"copying file {D1}", f"copying file {D1} {pct}%", done=pct == 100)
    view.update({"status": "quantizing F16 model to Q4_K_M", "digest": D2, "total": 10,
                 "completed": 4})
    view.update({"status": "quantizing F16 model to Q4_K_M", "digest": D2, "total": 10,
                 "completed": 10})
    view.update({"status": "success"})
    view.close()
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["gathering model components", f"copying file {D1} 100%"]
    assert lines[2].startswith("quantizing F16 model to Q4_K_M 100% ▕")
    assert lines[3:] == ["success"]
