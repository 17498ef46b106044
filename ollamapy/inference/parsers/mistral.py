"""Mistral's `[TOOL_CALLS]`: the JSON array of the Go-template family (`mistral`) and
Ministral's `[TOOL_CALLS]name[ARGS]{json}` with `[THINK]…[/THINK]` (`ministral`)."""

from __future__ import annotations

import json

from ollamapy.inference.parsers._bodies import json_list_body
from ollamapy.inference.parsers._tagged import BadCall, Call, Schemas, Spec, TaggedParser, json_args

TOOL_CALLS = "[TOOL_CALLS]"
ARGS = "[ARGS]"


def ministral_body(body: str, _schemas: Schemas) -> list[Call]:
    if ARGS not in body:
        raise BadCall("no [ARGS]")
    name, raw = body.split(ARGS, 1)
    if not name.strip():
        raise BadCall("no name")
    return [(name.strip(), json_args(json.loads(raw)))]


MISTRAL = Spec(parse_body=json_list_body, tool_open=TOOL_CALLS, json_after="")
MINISTRAL = Spec(parse_body=ministral_body, tool_open=TOOL_CALLS, json_after=ARGS,
                 think_open="[THINK]", think_close="[/THINK]", think_in_content=True)


def mistral() -> TaggedParser:
    return TaggedParser(MISTRAL)


def ministral() -> TaggedParser:
    return TaggedParser(MINISTRAL)
