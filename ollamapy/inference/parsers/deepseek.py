"""DeepSeek tool tokens: V3.1's `<｜tool▁call▁begin｜>name<｜tool▁sep｜>{args}<｜tool▁call▁end｜>`
and V3/R1's `function<｜tool▁sep｜>name` + a fenced JSON block, inside
`<｜tool▁calls▁begin｜>…<｜tool▁calls▁end｜>`; thinking ends at `</think>` (`deepseek3`)."""

from __future__ import annotations

import json
import re

from ollamapy.inference.parsers._tagged import BadCall, Call, Schemas, Spec, TaggedParser, json_args

CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
CALLS_END = "<｜tool▁calls▁end｜>"
CALL_BEGIN = "<｜tool▁call▁begin｜>"
CALL_END = "<｜tool▁call▁end｜>"
SEP = "<｜tool▁sep｜>"

_FENCE = re.compile(
    r"^\s*function\s*" + re.escape(SEP) + r"\s*(\S+?)\s*\n```(?:json)?\s*\n(.*?)\n?```\s*$", re.S)


def deepseek_body(body: str, _schemas: Schemas) -> list[Call]:
    calls: list[Call] = []
    for part in body.split(CALL_BEGIN)[1:]:
        part = part.split(CALL_END, 1)[0]
        if part.lstrip().startswith("function" + SEP):
            m = _FENCE.match(part)
            if m is None:
                raise BadCall("bad fenced call")
            calls.append((m.group(1).strip(), json_args(json.loads(m.group(2)))))
            continue
        if SEP not in part:
            raise BadCall("no tool separator")
        name, args = part.split(SEP, 1)
        calls.append((name.strip(), json_args(json.loads(args))))
    if not calls:
        raise BadCall("no calls")
    return calls


DEEPSEEK3 = Spec(parse_body=deepseek_body, tool_open=CALLS_BEGIN, tool_close=CALLS_END,
                 think_open="<think>", think_close="</think>", thinking=True)
DEEPSEEK_TOOLS = Spec(parse_body=deepseek_body, tool_open=CALLS_BEGIN, tool_close=CALLS_END)


def deepseek3() -> TaggedParser:
    return TaggedParser(DEEPSEEK3)


def deepseek_tools() -> TaggedParser:
    return TaggedParser(DEEPSEEK_TOOLS)
