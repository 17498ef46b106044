"""The client side's view of the environment (kept tiny: imported by every CLI command)."""

from __future__ import annotations

import os


def client_env() -> dict[str, str]:
    return dict(os.environ)
