"""The single gate through which a digest string may become a blob path (CVE-2024-37032)."""

from __future__ import annotations

import re

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
