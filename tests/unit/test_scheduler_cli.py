"""`ollamapy ps` formatting (pure parts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ollamapy.cli.ps import processor, rows, until

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def test_processor_column():
    assert processor(1000, 0) == "100% CPU"
    assert processor(1000, 1000) == "100% GPU"
    assert processor(1000, 2000) == "Unknown"
    assert processor(0, 5) == "Unknown"
    assert processor(1000, 520) == "48%/52% CPU/GPU"
    assert processor(1000, 995) == "1%/99% CPU/GPU"  # Go's math.Round: half away from zero


def test_until_column():
    assert until((NOW + timedelta(minutes=4, seconds=30)).isoformat(), NOW) == (
        "4 minutes from now")
    assert until((NOW - timedelta(seconds=1)).isoformat(), NOW) == "Stopping..."
    assert until((NOW + timedelta(days=292 * 365)).isoformat(), NOW) == "Forever"
    assert until(None, NOW) == "Never"


def test_rows_and_prefix_filter():
    models = [
        {"name": "smollm2:135m", "digest": "3ab7ebedb56770bf370f8b9c909f33bb", "size": 160222411,
         "size_vram": 0, "context_length": 4096,
         "expires_at": (NOW + timedelta(minutes=5)).isoformat()},
        {"name": "llama3:8b", "digest": "0123456789abcdef", "size": 5_600_000_000,
         "size_vram": 5_600_000_000, "context_length": 32768,
         "expires_at": "2026-05-01T12:00:30.5+00:00"},
    ]
    assert rows(models, now=NOW) == [
        ["smollm2:135m", "3ab7ebedb567", "160 MB", "100% CPU", "4096", "5 minutes from now"],
        ["llama3:8b", "0123456789ab", "5.6 GB", "100% GPU", "32768", "30 seconds from now"],
    ]
    assert [r[0] for r in rows(models, "llama", NOW)] == ["llama3:8b"]
