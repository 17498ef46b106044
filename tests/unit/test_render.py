"""Pure terminal rendering of `ollamapy run`: durations, stats block, word wrap, thinking."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ollamapy.cli import render
from ollamapy.cli.render import AnswerView, WordWrap, stats_block
from ollamapy.gofmt import duration_string as go_duration


@pytest.mark.parametrize(("ns", "text"), [
    (0, "0s"), (1, "1ns"), (999, "999ns"), (1_000, "1µs"), (850_000, "850µs"),
    (1_500, "1.5µs"), (150_123_000, "150.123ms"), (1_000_000, "1ms"),
    (1_000_000_000, "1s"), (1_234_567_891, "1.234567891s"), (1_500_000_000, "1.5s"),
    (123_004_000_000, "2m3.004s"), (3_600_000_000_000, "1h0m0s"),
    (3_723_000_000_000, "1h2m3s"), (-1_500_000_000, "-1.5s"), (60_000_000_000, "1m0s"),
])
def test_go_duration(ns: int, text: str) -> None:
    assert go_duration(ns) == text


def test_stats_block_wording_and_rates() -> None:
    block = stats_block({
        "total_duration": 1_234_567_891, "load_duration": 12_345_000,
        "prompt_eval_count": 26, "prompt_eval_duration": 130_000_000,
        "eval_count": 282, "eval_duration": 4_535_000_000,
    })
    assert block == (
        "total duration:       1.234567891s\n"
        "load duration:        12.345ms\n"
        "prompt eval count:    26 token(s)\n"
        "prompt eval duration: 130ms\n"
        "prompt eval rate:     200.00 tokens/s\n"
        "eval count:           282 token(s)\n"
        "eval duration:        4.535s\n"
        "eval rate:            62.18 tokens/s\n"
    )


def test_stats_block_omits_zero_lines() -> None:
    block = stats_block({"total_duration": 5_000_000, "eval_count": 3, "eval_duration": 0})
    assert block == "total duration:       5ms\neval count:           3 token(s)\n"
    assert stats_block({}) == ""


def screen(stream: str) -> list[str]:
    """A tiny terminal: printable chars, \\n, CSI n D (cursor left), CSI K (clear to EOL)."""
    lines = [[]]
    col = 0
    i = 0
    while i < len(stream):
        m = re.match(r"\x1b\[(\d*)([DK])", stream[i:])
        if m:
            if m.group(2) == "D":
                col = max(0, col - int(m.group(1) or 1))
            else:
                del lines[-1][col:]
            i += m.end()
            continue
        ch = stream[i]
        if ch == "\n":
            lines.append([])
            col = 0
        else:
            row = lines[-1]
            if col < len(row):
                row[col] = ch
            else:
                row.append(ch)
            col += 1
        i += 1
    return ["".join(r) for r in lines]


def feed_in_pieces(w: WordWrap, text: str, size: int) -> str:
    return "".join(w.feed(text[i:i + size]) for i in range(0, len(text), size))


def test_wrap_moves_the_word_to_the_next_line() -> None:
    text = "the quick brown fox jumps over the lazy dog " * 4
    out = feed_in_pieces(WordWrap(30), text, 3)
    rows = screen(out)
    assert all(len(r) <= 25 for r in rows), rows
    assert " ".join(" ".join(rows).split()) == " ".join(text.split())  # no word split or lost
    assert all(not r.startswith(" ") for r in rows)


def test_wrap_disabled_or_narrow_passes_through() -> None:
    text = "x " * 100
    assert WordWrap(80, enabled=False).feed(text) == text
    assert WordWrap(0).feed(text) == text
    assert WordWrap(9).feed(text) == text


def test_wrap_hard_breaks_a_word_longer_than_the_line() -> None:
    word = "a" * 70
    rows = screen(WordWrap(30).feed(word))
    assert "".join(rows) == word and all(len(r) <= 25 for r in rows)


def test_wrap_counts_wide_characters() -> None:
    text = "漢字" * 30
    rows = screen(WordWrap(30).feed(text))
    assert "".join(rows) == text
    assert all(render.text_width(r) <= 25 for r in rows)


def test_newlines_reset_the_line() -> None:
    w = WordWrap(30)
    out = w.feed("short line\nanother short line\n")
    assert out == "short line\nanother short line\n"


@settings(max_examples=60, deadline=None)
@given(words=st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=12), min_size=1,
                      max_size=60),
       width=st.integers(min_value=12, max_value=120), piece=st.integers(1, 7))
def test_wrap_property_never_exceeds_width_and_keeps_words(words: list[str], width: int,
                                                           piece: int) -> None:
    text = " ".join(words)
    rows = screen(feed_in_pieces(WordWrap(width), text, piece))
    assert all(len(r) <= width - 5 for r in rows)
    assert "".join("".join(rows).split()) == "".join(text.split())


def test_thinking_display_plain() -> None:
    v = AnswerView(WordWrap(0), plain=True)
    out = v.feed(thinking="Let me think")
    out += v.feed(thinking=" more")
    out += v.feed(content="Answer.")
    assert out == "Thinking...\nLet me think more\n...done thinking.\n\nAnswer."


def test_thinking_display_colored_and_hidden() -> None:
    v = AnswerView(WordWrap(0), plain=False)
    out = v.feed(thinking="hmm\n") + v.feed(content="ok")
    assert out.startswith(render.COLOR_GREY + render.COLOR_BOLD + "Thinking...\n")
    assert "...done thinking.\n\n" + render.COLOR_DEFAULT + "ok" in out
    assert "hmm\n\x1b" in out  # no extra newline when thinking already ended with one
    hidden = AnswerView(WordWrap(0), plain=True, hide_thinking=True)
    assert hidden.feed(thinking="secret") + hidden.feed(content="shown") == "shown"


def test_parameters_text() -> None:
    text = render.parameters_text('stop                           "<|im_end|>"',
                                  {"temperature": 0, "stop": ["a", "b"], "top_p": 0.5})
    assert text == (
        "Model defined parameters:\n"
        '  stop                           "<|im_end|>"\n'
        "\n"
        "User defined parameters:\n"
        "  temperature                    0\n"
        "  stop                           [a b]\n"
        "  top_p                          0.5\n"
        "\n"
    )
    assert render.parameters_text("", {}) == (
        "Model defined parameters:\n"
        "  No additional parameters were specified for this model.\n\n")


def test_pull_view_non_tty_prints_each_line_once() -> None:
    import io

    from ollamapy.cli.progress import ProgressView

    buf = io.StringIO()
    # run's pull is drawn by the one progress display (Ollama's bar layout, 80 columns here)
    v = ProgressView("pulling", stream=buf, tty=False, width=80)
    d = "sha256:" + "ab" * 32
    for m in ({"status": "pulling manifest"}, {"status": "pulling abab", "digest": d,
              "total": 10, "completed": 0}, {"status": "pulling abab", "digest": d, "total": 10,
              "completed": 10}, {"status": "verifying sha256 digest"}, {"status": "success"}):
        v.update(m)
    v.close()
    lines = buf.getvalue().splitlines()
    assert lines[0] == "pulling manifest" and lines[2:] == ["verifying sha256 digest", "success"]
    assert lines[1].startswith("pulling abababababab: 100% ▕█") and lines[1].endswith("▏   10 B")
    assert len(lines) == 4


def test_colour_reset_when_the_answer_ends_while_thinking() -> None:
    v = AnswerView(WordWrap(0), plain=False)
    v.feed(thinking="still thinking")
    assert v.finish() == render.COLOR_DEFAULT
    v.feed(content="done")
    assert v.finish() == ""
    assert AnswerView(WordWrap(0), plain=True).finish() == ""
