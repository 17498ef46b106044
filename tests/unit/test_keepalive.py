import math
from datetime import UTC, datetime, timedelta

import pytest

from ollamapy.errors import BadRequest
from ollamapy.keepalive import FOREVER, expiry, is_forever, parse_keep_alive, sort_key, to_json


@pytest.mark.parametrize(("value", "seconds"), [
    (None, None), (0, 0.0), (300, 300.0), (0.5, 0.5), (3600, 3600.0),
    ("5m", 300.0), ("1h30m", 5400.0), ("300ms", 0.3), ("0", 0.0), ("0s", 0.0),
    (-1, FOREVER), (-0.5, FOREVER), ("-1m", FOREVER), ("-1s", FOREVER),
])
def test_valid_forms(value, seconds):
    assert parse_keep_alive(value) == seconds


@pytest.mark.parametrize(("value", "message"), [
    ("300", 'time: missing unit in duration "300"'),
    ("-1", 'time: missing unit in duration "-1"'),
    ("abc", 'time: invalid duration "abc"'),
    ("", 'time: invalid duration ""'),
    (True, "Unsupported type: 'bool'"),
    ({"a": 1}, "Unsupported type: 'map[string]interface {}'"),
    ([1], "Unsupported type: '[]interface {}'"),
])
def test_invalid_forms_are_400(value, message):
    with pytest.raises(BadRequest) as e:
        parse_keep_alive(value)
    assert e.value.status == 400
    assert e.value.message == message


def test_forever_sorts_last_and_expires_far_out():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert is_forever(FOREVER) and is_forever(-math.inf) and not is_forever(0)
    assert sorted([FOREVER, 300, 0], key=sort_key) == [0, 300, FOREVER]
    assert expiry(now, FOREVER) - now > timedelta(days=365 * 290)
    assert expiry(now, 60) == now + timedelta(minutes=1)


def test_serialised_like_ollama():
    assert to_json(FOREVER) == -1
    assert to_json(300) == "5m0s"
    assert to_json(0) == "0s"


@pytest.mark.parametrize("value", [1e12, "100000000h", 1e300])
def test_durations_beyond_go_range_mean_forever(value):
    """Go's Duration is int64 ns (~292 years): anything longer is "forever", never a datetime
    overflow in the scheduler (which would leave the request waiting for ever)."""
    from ollamapy.keepalive import normalize

    seconds = normalize(parse_keep_alive(value))
    assert is_forever(seconds)
    now = datetime.now(UTC)
    assert expiry(now, seconds) - now > timedelta(days=290 * 365)
    assert expiry(now, 9e9) > now  # just inside the range still works
