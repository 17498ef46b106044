"""Tool-call parsing on fixed model outputs, fed whole and in small stream pieces."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamapy.template.gotemplate import parse
from ollamapy.template.tools import ToolParser, extract_calls, scan_json, tag_from_jinja, tool_tag

HERE = Path(__file__).parent / "templates"
NAMES = ["get_weather", "get_time"]


def run(tag: str, text: str, step: int) -> tuple[str, list[tuple[str, dict]]]:
    p = ToolParser(tag, NAMES)
    content = ""
    calls = []
    for i in range(0, len(text), step):
        c, new = p.add(text[i:i + step])
        content += c
        calls += [(x.name, x.arguments) for x in new]
    content += p.finish()
    return content, calls


@pytest.mark.parametrize("step", [1, 3, 1000])
@pytest.mark.parametrize(("tag", "text", "content", "calls"), [
    # qwen: content before the tag streams, the call is parsed
    ("<tool_call>", 'Sure.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
     "</tool_call>", "Sure.", [("get_weather", {"city": "Paris"})]),
    # two calls, arguments as a JSON string, "parameters" key
    ("<tool_call>", '<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}'
     '</tool_call>\n<tool_call>{"name": "get_time", "parameters": {"tz": "UTC"}}</tool_call>', "",
     [("get_weather", {"city": "Rome"}), ("get_time", {"tz": "UTC"})]),
    # mistral: a list after [TOOL_CALLS]
    ("[TOOL_CALLS]", '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Oslo"}}]', "",
     [("get_weather", {"city": "Oslo"})]),
    # llama3.1: bare JSON first
    ("{", ' {"name": "get_weather", "parameters": {"city": "Lima"}}', "",
     [("get_weather", {"city": "Lima"})]),
    # bare JSON that is not a tool call comes back as content
    ("{", '{"answer": 42}', '{"answer": 42}', []),
    # text first: with tag "{" a later object is just content
    ("{", 'Use {"name": "get_weather"} maybe', 'Use {"name": "get_weather"} maybe', []),
    # unknown tool name -> content
    ("<tool_call>", '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>',
     '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>', []),
    # a tag that never completes is returned at the end
    ("<tool_call>", "Hello <tool_ca", "Hello <tool_ca", []),
    # braces inside strings do not confuse the scanner
    ("<tool_call>", '<tool_call>{"name": "get_weather", "arguments": {"city": "a}b{"}}',
     "", [("get_weather", {"city": "a}b{"})]),
    # function-name-as-key form
    ("<tool_call>", '<tool_call>{"get_time": {"tz": "CET"}}', "", [("get_time", {"tz": "CET"})]),
])
def test_parse(tag: str, text: str, content: str, calls: list, step: int) -> None:
    got_content, got_calls = run(tag, text, step)
    assert got_calls == calls
    assert got_content == content


def test_indexes_and_ids() -> None:
    p = ToolParser("<tool_call>", NAMES)
    _, calls = p.add('<tool_call>{"name":"get_weather","arguments":{}}<tool_call>'
                     '{"name":"get_time","arguments":{}}')
    assert [c.index for c in calls] == [0, 1]
    assert all(c.id.startswith("call_") and len(c.id) == 13 for c in calls)
    assert calls[0].ollama()["function"] == {"index": 0, "name": "get_weather", "arguments": {}}


def test_tag_from_templates() -> None:
    assert tool_tag(parse((HERE / "qwen2.5.gotmpl").read_text())) == "<tool_call>"
    assert tool_tag(parse((HERE / "llama3.1.gotmpl").read_text())) == ""
    assert tool_tag(parse("{{ if .ToolCalls }}[TOOL_CALLS] [{{ end }}")) == "[TOOL_CALLS] ["
    assert tool_tag(parse("{{ .Prompt }}")) == ""
    assert tag_from_jinja("{% if tools %}<tool_call>{% endif %}") == "<tool_call>"
    assert tag_from_jinja("plain") == "{"


def test_scan_json_and_extract() -> None:
    assert scan_json('x{"a": "}"}y', 1) == 11
    assert scan_json('{"a": [1, 2', 0) == -1
    assert extract_calls({"function": {"name": "get_time", "arguments": {}}}, NAMES) == [
        ("get_time", {})]
    assert extract_calls({"name": "functions.get_weather", "arguments": {"c": 1}}, NAMES) == [
        ("get_weather", {"c": 1})]
