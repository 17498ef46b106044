"""ollamapy/pins.toml and the cache location for the build scripts, which run with the system
Python before any venv exists: they import only stdlib-only modules of the package."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ollamapy.paths import cache_dir  # noqa: E402
from ollamapy.pins import PINS_FILE  # noqa: E402
from ollamapy.store.digest import sha256_hex as sha256_file  # noqa: E402

__all__ = ["REPO", "cache_dir", "pins", "sha256_file"]


def pins() -> dict:
    with PINS_FILE.open("rb") as f:
        return tomllib.load(f)
