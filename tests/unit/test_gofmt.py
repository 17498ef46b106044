"""Go's text forms against Go's own expected outputs.

The float rows are the `'g', -1` rows of Go's src/strconv/ftoa_test.go (ftoatests) plus the
threshold cases of formatDigits' shortest rule (%e when exp < -4 || exp >= 6); the duration rows
are Go's src/time durationTests for Duration.String().
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ollamapy.gofmt import (
    duration_string,
    format_duration,
    format_float,
    format_time,
    format_value,
    parse_duration,
    parse_param,
)

BELOW_1E23 = 99999999999999974834176.0
ABOVE_1E23 = 100000000000000008388608.0

GO_FORMAT_FLOAT_G = [
    # strconv ftoatests, fmt 'g', prec -1
    (1.0, "1"), (20.0, "20"), (1234567.8, "1.2345678e+06"), (200000.0, "200000"),
    (2000000.0, "2e+06"), (0.0, "0"), (-1.0, "-1"), (12.0, "12"),
    (123456700.0, "1.234567e+08"), (1e23, "1e+23"), (BELOW_1E23, "9.999999999999997e+22"),
    (ABOVE_1E23, "1.0000000000000001e+23"), (5e-324, "5e-324"), (-5e-324, "-5e-324"),
    (32.0, "32"), (math.nan, "NaN"), (math.inf, "+Inf"), (-math.inf, "-Inf"),
    (2.2250738585072012e-308, "2.2250738585072014e-308"),
    (2.2250738585072011e-308, "2.225073858507201e-308"),
    (383260575764816448.0, "3.8326057576481645e+17"),
    (-5.8339553793802237e+23, "-5.8339553793802237e+23"),
    # the shortest-precision thresholds: exponent form at exp >= 6 and exp < -4
    (1e6, "1e+06"), (999999.0, "999999"), (123456.0, "123456"), (123456.789, "123456.789"),
    (1e21, "1e+21"), (1e20, "1e+20"), (0.0001, "0.0001"), (0.00001, "1e-05"),
    (1.5e-5, "1.5e-05"), (0.7, "0.7"), (0.1 + 0.2, "0.30000000000000004"),
    (1.7976931348623157e308, "1.7976931348623157e+308"), (1e100, "1e+100"), (-0.0, "-0"),
]


@pytest.mark.parametrize(("f", "want"), GO_FORMAT_FLOAT_G)
def test_format_float_matches_go(f: float, want: str) -> None:
    assert format_float(f) == want


def test_format_value_is_percent_v_of_json() -> None:
    assert [format_value(v) for v in (True, False, 4096, 1000000, 0.5, "x")] == [
        "true", "false", "4096", "1e+06", "0.5", "x"]


GO_DURATION_STRING = [
    (0, "0s"), (1, "1ns"), (1100, "1.1µs"), (2_200_000, "2.2ms"), (3_300_000_000, "3.3s"),
    ((4 * 60 + 5) * 10**9, "4m5s"), (4 * 60 * 10**9 + 5001 * 10**6, "4m5.001s"),
    ((5 * 3600 + 6 * 60) * 10**9 + 7001 * 10**6, "5h6m7.001s"),
    (8 * 60 * 10**9 + 1, "8m0.000000001s"),
    (2**63 - 1, "2562047h47m16.854775807s"), (-(2**63), "-2562047h47m16.854775808s"),
]


@pytest.mark.parametrize(("ns", "want"), GO_DURATION_STRING)
def test_duration_string_matches_go(ns: int, want: str) -> None:
    assert duration_string(ns) == want


def test_format_duration_takes_seconds() -> None:
    assert [format_duration(s) for s in (300, 0.3, -1.5)] == ["5m0s", "300ms", "-1.5s"]


def test_parse_duration_round_trips_go_strings() -> None:
    for ns, text in GO_DURATION_STRING[:9]:
        assert parse_duration(text) == pytest.approx(ns / 1e9)


def test_format_time_like_go_json() -> None:
    assert format_time(datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)) == "2024-05-01T12:00:00Z"
    assert format_time(datetime(2024, 5, 1, 12, 0, 0, 120000, tzinfo=UTC)) == (
        "2024-05-01T12:00:00.12Z")
    plus2 = timezone(timedelta(hours=2))
    assert format_time(datetime(2024, 5, 1, 12, 0, 0, 5, tzinfo=plus2)) == (
        "2024-05-01T12:00:00.000005+02:00")


@pytest.mark.parametrize(("name", "values", "want"), [
    ("num_ctx", ["4096"], 4096), ("seed", ["-1"], -1), ("temperature", ["0.7"], 0.7),
    ("temperature", ["1"], 1.0), ("top_p", ["1e-1"], 0.1), ("use_mmap", ["TRUE"], True),
    ("use_mmap", ["F"], False), ("stop", ["a", "b"], ["a", "b"]),
])
def test_parse_param_go_rules(name: str, values: list[str], want: object) -> None:
    assert parse_param(name, values) == want


@pytest.mark.parametrize(("name", "value", "msg"), [
    ("num_ctx", "1_000", "invalid int value [1_000]"),  # ParseInt base 10: no underscores
    ("num_ctx", "1.5", "invalid int value [1.5]"),
    ("temperature", "nan", "invalid float value [nan]"),  # JSON cannot carry NaN
    ("temperature", "1_0", "invalid float value [1_0]"),
    ("use_mmap", "tRuE", "invalid bool value [tRuE]"),  # ParseBool's fixed spellings only
    ("nope", "1", "unknown parameter 'nope'"),
])
def test_parse_param_errors(name: str, value: str, msg: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_param(name, [value])
    assert str(e.value) == msg
