"""Gemma 4 (`gemma4`, `gemma4-no-thinking`): thinking in `<|channel>thought\\n…<channel|>`
(dropped unless thinking was asked for), calls as `<|tool_call>call:NAME{key:value,…}<tool_call|>`
with strings delimited by `<|"|>` and bare keys."""

from __future__ import annotations

import json
import re

from ollamapy.inference.parsers._tagged import BadCall, Call, Schemas, Spec, TaggedParser, json_args

STRING = '<|"|>'
_QUOTED = re.compile(re.escape(STRING) + r"(.*?)" + re.escape(STRING), re.S)
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BARE_KEY = re.compile(r"([{,]\s*)([^\W]\w*)(\s*):", re.U)


def args_to_json(s: str) -> str:
    """Gemma 4's argument syntax as JSON: `<|"|>` strings become JSON strings, bare keys get
    quoted (text inside strings is left alone)."""
    strings: list[str] = []

    def stash(m: re.Match[str]) -> str:
        strings.append(m.group(1))
        return f"\x00{len(strings) - 1}\x00"

    text = _QUOTED.sub(stash, s)
    out, i = [], 0
    for m in _JSON_STRING.finditer(text):
        out.append(_BARE_KEY.sub(r'\1"\2"\3:', text[i:m.start()]))
        out.append(m.group(0))
        i = m.end()
    out.append(_BARE_KEY.sub(r'\1"\2"\3:', text[i:]))
    text = "".join(out)
    return re.sub("\x00(\\d+)\x00", lambda m: json.dumps(strings[int(m.group(1))]), text)


def gemma4_body(body: str, _schemas: Schemas) -> list[Call]:
    if not body.startswith("call:"):
        raise BadCall("expected call:")
    rest = body[len("call:"):]
    i = rest.find("{")
    if i < 0 or len(body) > 1 << 20:
        raise BadCall("expected {")
    name = rest[:i].strip()
    return [(name, json_args(json.loads(args_to_json(rest[i:]))))]


def _spec(thinking: bool) -> Spec:
    return Spec(parse_body=gemma4_body, tool_open="<|tool_call>", tool_close="<tool_call|>",
                think_open="<|channel>", think_close="<channel|>", think_in_content=True,
                thinking_first=False, think_prefix="thought\n", thinking=thinking,
                drop_thinking_off=True, after_call_noise=("<tool_call|>", "<|tool_response>"))


GEMMA4 = _spec(True)
GEMMA4_NO_THINKING = _spec(False)


def gemma4() -> TaggedParser:
    return TaggedParser(GEMMA4)


def gemma4_no_thinking() -> TaggedParser:
    return TaggedParser(GEMMA4_NO_THINKING)
