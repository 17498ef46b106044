"""Where ollamapy keeps things outside the model store (caches, runner config, keys)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Build and download cache, shared by every clone: `OLLAMAPY_CACHE` or ~/.cache/ollamapy."""
    root = os.environ.get("OLLAMAPY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ollamapy"
    )
    return Path(root)


def ollama_home() -> Path:
    """~/.ollama: history file, ed25519 key, default model store parent."""
    return Path(os.path.expanduser("~/.ollama"))


def repo_root() -> Path | None:
    """The source checkout this package runs from, if any (editable installs)."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "CMakeLists.txt").exists() and (here / "runners").is_dir() else None
