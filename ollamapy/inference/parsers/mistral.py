"""Mistral's `[TOOL_CALLS]`: the JSON array of the Go-template family (`mistral`) and
Ministral's `[TOOL_CALLS]name[ARGS]{json}` with `[THINK]…[/THINK]` (`ministral`)."""

from __future__ import annotations

import json

from ollamapy.inference.parsers._bodies import json_list_body
from ollamapy.inference.parsers._tagged import BadCall, Call, Schemas, Spec, TaggedParser, json_args
from ollamapy.template.tools import scan_json

TOOL_CALLS = "[TOOL_CALLS]"
ARGS = "[ARGS]"


def _json_end(buf: str) -> int:
    """End of the first complete JSON value in buf (-1 while it is still streaming)."""
    s = len(buf) - len(buf.lstrip())
    if s >= len(buf):
        return -1
    if buf[s] not in "[{":
        return len(buf) if buf.strip() else -1
    return scan_json(buf, s)


def _ministral_end(buf: str) -> int:
    i = buf.find(ARGS)
    if i < 0:
        return -1
    j = len(buf) - len(buf[i + len(ARGS):].lstrip())
    return scan_json(buf, j) if j < len(buf) and buf[j] in "{[" else -1


def ministral_body(body: str, _schemas: Schemas) -> list[Call]:
    if ARGS not in body:
        raise BadCall("no [ARGS]")
    name, raw = body.split(ARGS, 1)
    if not name.strip():
        raise BadCall("no name")
    return [(name.strip(), json_args(json.loads(raw)))]


MISTRAL = Spec(parse_body=json_list_body, tool_open=TOOL_CALLS, body_end=_json_end)
MINISTRAL = Spec(parse_body=ministral_body, tool_open=TOOL_CALLS, body_end=_ministral_end,
                 think_open="[THINK]", think_close="[/THINK]", think_in_content=True)


def mistral() -> TaggedParser:
    return TaggedParser(MISTRAL)


def ministral() -> TaggedParser:
    return TaggedParser(MINISTRAL)
