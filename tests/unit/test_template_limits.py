"""Bounded template work (issue 11): output, steps, printf width, nesting depth, node count and
linear-time parsing. Each case is a ~100-byte input that ran unbounded before."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from ollamapy.errors import LimitExceeded
from ollamapy.inference.prompt import compile_template
from ollamapy.template.gotemplate import Limits, TemplateLimitError, limits, parse, set_limits


@pytest.fixture(autouse=True)
def _fresh_limits() -> Iterator[None]:
    set_limits(None)
    yield
    set_limits(None)


@pytest.fixture
def hang_guard() -> Iterator[None]:
    """Fail instead of hanging: these inputs took minutes before the fix (not a benchmark)."""
    def boom(*_: object) -> None:
        raise TimeoutError("template work did not finish within 30 s")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_printf_width_bomb_is_refused() -> None:
    t = parse('{{range 10}}{{printf "%10000000d" 1}}{{end}}')
    with pytest.raises(TemplateLimitError, match="printf width 10000000"):
        t.render({})


def test_printf_precision_bomb_is_refused() -> None:
    with pytest.raises(TemplateLimitError, match="precision"):
        parse('{{printf "%.99999999f" 1.5}}').render({})


def test_printf_width_within_limit_pads() -> None:
    t = parse('{{printf "%5d|%-4s|%.2f|%.3s" 42 "ab" 3.14159 "abcdef"}}')
    assert t.render({"Response": ""}) == "   42|ab  |3.14|abc"


def test_range_over_huge_int_is_refused_without_materialising() -> None:
    with pytest.raises(TemplateLimitError, match="steps"):
        parse("{{range 100000000000}}{{end}}").render({})


def test_total_steps_are_bounded_across_nested_ranges() -> None:
    t = parse("{{range 2000}}{{range 2000}}x{{end}}{{end}}", Limits(max_steps=100_000))
    with pytest.raises(TemplateLimitError, match="100000 steps"):
        t.render({})


def test_output_size_is_bounded() -> None:
    t = parse('{{range 1000}}{{printf "%90000d" 1}}{{end}}')
    with pytest.raises(TemplateLimitError, match="output exceeds"):
        t.render({})


def test_output_limit_is_configurable_from_env() -> None:
    lim = Limits.from_env({"OLLAMAPY_TEMPLATE_MAX_OUTPUT": "10",
                           "OLLAMAPY_TEMPLATE_MAX_WIDTH": "3"})
    assert lim.max_output == 10 and lim.max_width == 3
    with pytest.raises(TemplateLimitError):
        parse("{{range 20}}x{{end}}", lim).render({"Response": ""})
    assert parse("{{range 10}}x{{end}}", lim).render({"Response": ""}) == "x" * 10
    with pytest.raises(TemplateLimitError):
        parse('{{printf "%4d" 1}}', lim).render({"Response": ""})


def test_env_limits_apply_process_wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMAPY_TEMPLATE_MAX_STEPS", "50")
    set_limits(None)
    assert limits().max_steps == 50
    with pytest.raises(TemplateLimitError):
        parse("{{range 100}}{{end}}").render({})


def test_deep_nesting_is_a_clear_error_not_recursion() -> None:
    with pytest.raises(TemplateLimitError, match="nesting"):
        parse("{{if 1}}" * 1000 + "{{end}}" * 1000)
    with pytest.raises(TemplateLimitError, match="nesting"):
        parse("{{" + "(" * 5000 + "1" + ")" * 5000 + "}}")


def test_node_count_is_bounded() -> None:
    with pytest.raises(TemplateLimitError, match="actions"):
        parse("{{.}}" * 100_000)


def test_parse_is_linear_in_template_size(hang_guard: None) -> None:
    # each action used to copy the rest of the source: 4000 actions x 40 MB of text
    src = "{{.}}" * 4000 + "x" * 40_000_000
    assert len(parse(src).nodes) >= 4001


def test_limit_errors_become_400_even_for_request_templates() -> None:
    with pytest.raises(LimitExceeded) as e:
        compile_template("{{if 1}}" * 500 + "{{end}}" * 500)
    assert e.value.status == 400
    assert e.value.message.startswith("template error: template nesting deeper than 100")


def test_real_templates_are_far_below_the_limits() -> None:
    from pathlib import Path
    for f in (Path(__file__).parent / "templates").glob("*.gotmpl"):
        t = parse(f.read_text())
        msgs = [{"Role": "user", "Content": "hi " * 100}] * 2000
        out = t.render({"Messages": msgs, "System": "s", "Tools": [], "Prompt": "p"})
        assert len(out) > 0
