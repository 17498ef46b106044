import pytest

from ollamapy.gofmt import format_duration as format_go_duration
from ollamapy.gofmt import parse_duration as parse_go_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 300), ("1h30m", 5400), ("-1s", -1), ("0", 0), ("1.5h", 5400), ("300ms", 0.3),
     ("2h45m10s", 9910), ("+10s", 10), ("1us", 1e-6), (".5s", 0.5)],
)
def test_parse(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "300", "m", "5x", "1h 30m", "--1s", "abc"])
def test_invalid(text):
    with pytest.raises(ValueError):
        parse_go_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [(300, "5m0s"), (0, "0s"), (3600, "1h0m0s"),
                                               (1.5, "1.5s"), (-60, "-1m0s")])
def test_format(seconds, text):
    assert format_go_duration(seconds) == text
