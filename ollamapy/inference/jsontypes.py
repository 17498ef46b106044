"""Names for JSON shapes: request bodies, llama-server events and wire chunks are JSON objects
whose values are checked where they are read."""

from __future__ import annotations

from typing import Any

JsonObject = dict[str, Any]
