"""Reads ollamapy/pins.toml for the build scripts (stdlib only: they run before any venv exists)."""

from __future__ import annotations

import hashlib
import os
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PINS_FILE = REPO / "ollamapy" / "pins.toml"


def pins() -> dict:
    with PINS_FILE.open("rb") as f:
        return tomllib.load(f)


def cache_dir() -> Path:
    """Downloads and builds live outside the clone so fresh clones reuse them."""
    root = os.environ.get("OLLAMAPY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ollamapy"
    )
    return Path(root)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
