"""The single gate through which a digest string may become a blob path (CVE-2024-37032), and
the one file hasher (stdlib only: the build scripts import it before any venv exists)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ollamapy.errors import BadRequest

_DIGEST = re.compile(r"sha256[:-][0-9a-fA-F]{64}")


def is_valid_digest(s: object) -> bool:
    return isinstance(s, str) and _DIGEST.fullmatch(s) is not None


def validate_digest(s: object) -> str:
    """'sha256:<64 hex>' or 'sha256-<64 hex>' -> canonical 'sha256:<64 lowercase hex>'."""
    if not is_valid_digest(s):
        raise BadRequest("invalid digest format")
    assert isinstance(s, str)
    return "sha256:" + s[7:].lower()


def blob_filename(digest: str) -> str:
    """'sha256:<hex>' -> 'sha256-<hex>' (the on-disk name), after validation."""
    return validate_digest(digest).replace(":", "-", 1)


def sha256_hex(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (what pins.toml records)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    """A file's digest in the store's spelling, `sha256:<hex>`."""
    return "sha256:" + sha256_hex(path)
