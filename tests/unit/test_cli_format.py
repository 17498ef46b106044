"""CLI formatting helpers: Ollama's HumanBytes, HumanTime and table layout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ollamapy.cli.format import (
    human_bytes,
    human_time,
    human_until,
    parse_time,
    rows_lines,
    table_lines,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("n", "s"), [
    (0, "0 B"), (999, "999 B"), (1000, "1 KB"), (1500, "1.5 KB"), (98_362_697, "98 MB"),
    (4_700_000_000, "4.7 GB"), (2_019_000_000, "2.0 GB"), (2_000_000_000, "2 GB"),
    (42_000_000_000, "42 GB"), (1_200_000_000_000, "1.2 TB"), (10_500_000, "10 MB"),
])
def test_human_bytes(n: int, s: str) -> None:
    assert human_bytes(n) == s


@pytest.mark.parametrize(("delta", "s"), [
    (timedelta(milliseconds=300), "Less than a second ago"),
    (timedelta(seconds=1), "1 second ago"), (timedelta(seconds=42), "42 seconds ago"),
    (timedelta(seconds=61), "About a minute ago"), (timedelta(minutes=5), "5 minutes ago"),
    (timedelta(minutes=59, seconds=59), "59 minutes ago"),
    (timedelta(minutes=80), "About an hour ago"), (timedelta(hours=5), "5 hours ago"),
    (timedelta(hours=47), "47 hours ago"), (timedelta(days=3), "3 days ago"),
    (timedelta(days=20), "2 weeks ago"), (timedelta(days=90), "3 months ago"),
    (timedelta(days=800), "2 years ago"),
])
def test_human_time(delta: timedelta, s: str) -> None:
    assert human_time(NOW - delta, now=NOW) == s


def test_human_until() -> None:
    assert human_until(NOW + timedelta(minutes=4, seconds=10), now=NOW) == "4 minutes from now"
    assert human_until(NOW + timedelta(days=365 * 250), now=NOW) == "Forever"
    assert human_time(None) == "Never"


def test_parse_time() -> None:
    dt = parse_time("2024-05-05T10:00:00.123456789-07:00")
    assert dt is not None and dt.microsecond == 123456
    assert dt.utcoffset() == timedelta(hours=-7)
    assert parse_time("2024-05-05T10:00:00Z") == datetime(2024, 5, 5, 10, tzinfo=UTC)
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time("garbage") is None


def test_table_layout() -> None:
    lines = table_lines(["NAME", "ID", "SIZE", "MODIFIED"],
                        [["smollm2:135m", "3ab7ebedb567", "98 MB", "2 hours ago"],
                         ["a:b", "0123456789ab", "1.5 KB", "Less than a second ago"]])
    assert lines == [
        "NAME            ID              SIZE      MODIFIED",
        "smollm2:135m    3ab7ebedb567    98 MB     2 hours ago",
        "a:b             0123456789ab    1.5 KB    Less than a second ago",
    ]


def test_rows_lines_wrap() -> None:
    assert rows_lines([["", "architecture", "llama"], ["", "quantization", "Q4_1"]]) == [
        "    architecture    llama", "    quantization    Q4_1"]
    wrapped = rows_lines([["", "word " * 30]], col_width=20)
    assert all(len(x) <= 4 + 20 for x in wrapped) and len(wrapped) > 1
