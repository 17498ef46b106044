"""Family parsers against Ollama's parser test cases (model/parsers/*_test.go, harmony/
harmonyparser_test.go at ollama fb307609), unsplit and in every/random split."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ollamapy.api.inference import Message, Tool
from ollamapy.inference import parsers
from ollamapy.inference.events import TextDelta, ThinkingDelta, ToolCallEvent


def tool(name: str, **props: str) -> Tool:
    return Tool(function={"name": name, "parameters": {
        "type": "object", "properties": {k: {"type": v} for k, v in props.items()}}})


def run(name: str, chunks: list[str], tools: list[Tool] | None = None, think: Any = None,
        last: Message | None = None) -> tuple[str, str, list[tuple[str, dict[str, Any], int]]]:
    p = parsers.get(name)
    assert p is not None
    p.init(tools, last, think)
    events = [e for c in chunks for e in p.feed(c)] + p.finish()
    content = "".join(e.text for e in events if isinstance(e, TextDelta))
    thinking = "".join(e.text for e in events if isinstance(e, ThinkingDelta))
    calls = [(e.name, e.arguments, e.index) for e in events if isinstance(e, ToolCallEvent)]
    assert all(e.id.startswith("call_") for e in events if isinstance(e, ToolCallEvent))
    return content, thinking, calls


WEATHER = [tool("get_weather", location="string", city="string", unit="string")]
DS_TOOLS = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>"
DS_SEP, DS_END = "<｜tool▁sep｜>", "<｜tool▁call▁end｜>"

# (source, parser, tools, think, output, content, thinking, calls)
GOLDEN: list[tuple[str, str, list[Tool] | None, Any, str, str, str, list[Any]]] = [
    ("qwen3coder_test: content before tool call / trailing whitespace", "qwen3-coder", WEATHER,
     None, "abc\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
     "</function>\n</tool_call>\ndef", "abcdef", "",
     [("get_weather", {"city": "Paris"}, 0)]),
    ("qwen3coder_test: multiple tool calls in one message", "qwen3-coder", None, None,
     "before1<tool_call><function=a></function></tool_call>after1"
     "<tool_call><function=b><parameter=x>1</parameter></function></tool_call>after2",
     "before1after1after2", "", [("a", {}, 0), ("b", {"x": "1"}, 1)]),
    ("qwen3coder_test: partial tool open tag fakeout", "qwen3-coder", None, None,
     "abc\n<tool_call fakeout", "abc\n<tool_call fakeout", "", []),
    ("qwen3coder_test: typed parameters", "qwen3-coder",
     [tool("f", n="integer", x="number", b="boolean", a="array", o="object", s="string")],
     None, "<tool_call>\n<function=f>\n<parameter=n>\n42\n</parameter>\n<parameter=x>\n1.5\n"
     "</parameter>\n<parameter=b>\ntrue\n</parameter>\n<parameter=a>\n[1, 2]\n</parameter>\n"
     "<parameter=o>\n{\"k\": \"v\"}\n</parameter>\n<parameter=s>\nnull\n</parameter>\n"
     "</function>\n</tool_call>", "", "",
     [("f", {"n": 42, "x": 1.5, "b": True, "a": [1, 2], "o": {"k": "v"}, "s": None}, 0)]),
    ("qwen3coder_test: xml special characters in values", "qwen3-coder", None, None,
     "<tool_call><function=exec><parameter=cmd>\nls && echo \"a<b>\"\n</parameter></function>"
     "</tool_call>", "", "", [("exec", {"cmd": 'ls && echo "a<b>"'}, 0)]),
    ("harmony: analysis then final", "harmony", None, True,
     "<|channel|>analysis<|message|>Let me think.<|end|><|start|>assistant<|channel|>final"
     "<|message|>The answer is 4.", "The answer is 4.", "Let me think.", []),
    ("harmonyparser_test: implicit start, tool call with constrain", "harmony",
     [tool("get_current_weather", location="string")], True,
     "<|channel|>analysis<|message|>User asks weather in SF. We need location. Use "
     "get_current_weather with location \"San Francisco, CA\".<|end|><|start|>assistant"
     "<|channel|>commentary to=functions.get_current_weather <|constrain|>json<|message|>"
     "{\"location\":\"San Francisco, CA\"}<|call|>", "",
     "User asks weather in SF. We need location. Use get_current_weather with location "
     "\"San Francisco, CA\".", [("get_current_weather", {"location": "San Francisco, CA"}, 0)]),
    ("harmony: renamed tool names map back", "harmony", [tool("get-weather.now")], True,
     "<|channel|>commentary to=functions.get_weather_now<|message|>{}", "", "",
     [("get-weather.now", {}, 0)]),
    ("harmony: commentary without recipient is content", "harmony", None, None,
     "<|channel|>commentary<|message|>Working on it.<|end|>", "Working on it.", "", []),
    ("qwen3_test: thinking then content then call", "qwen3-thinking", WEATHER, True,
     "<think>\nLet me check.\n</think>\n\nSure.\n<tool_call>\n{\"name\": \"get_weather\", "
     "\"arguments\": {\"location\": \"Paris\"}}\n</tool_call>", "Sure.", "Let me check.",
     [("get_weather", {"location": "Paris"}, 0)]),
    ("qwen3_test: think false -> all content", "qwen3-thinking", None, False,
     "Hello there", "Hello there", "", []),
    ("qwen3vl: instruct JSON tool call", "qwen3-vl-instruct", WEATHER, None,
     "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n"
     "</tool_call>", "", "", [("get_weather", {"city": "Rome"}, 0)]),
    ("nemotron3nano_test: thinking content then tool call", "nemotron-3-nano", None, True,
     "Let me think...</think>\nI'll check for you.\n<tool_call>\n<function=search>\n"
     "<parameter=query>\ntest\n</parameter>\n</function>\n</tool_call>",
     "I'll check for you.", "Let me think...", [("search", {"query": "test"}, 0)]),
    ("nemotron3nano_test: empty thinking block", "nemotron-3-nano", None, True,
     "</think>\nHere is my answer.", "Here is my answer.", "", []),
    ("qwen35: thinking then XML call", "qwen3.5", WEATHER, None,
     "Plan.</think>\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n"
     "</parameter>\n</function>\n</tool_call>", "", "Plan.",
     [("get_weather", {"city": "Oslo"}, 0)]),
    ("deepseek3_test: thinking_with_newlines", "deepseek3", None, True,
     "Let me think:\n- Point 1\n- Point 2</think>\n\nHere's my answer.", "Here's my answer.",
     "Let me think:\n- Point 1\n- Point 2", []),
    ("deepseek3_test: multiple_tool_calls", "deepseek3", WEATHER, False,
     "Getting weather for both cities." + DS_TOOLS + "get_weather" + DS_SEP +
     "{\"location\":\"Paris\"}" + DS_END + "<｜tool▁call▁begin｜>get_weather" + DS_SEP +
     "{\"location\":\"London\"}" + DS_END + "<｜tool▁calls▁end｜>",
     "Getting weather for both cities.", "",
     [("get_weather", {"location": "Paris"}, 0), ("get_weather", {"location": "London"}, 1)]),
    ("deepseek v3 template: fenced tool call", "deepseek-tools", WEATHER, None,
     DS_TOOLS + "function" + DS_SEP + "get_weather\n```json\n{\"location\": \"Tokyo\"}\n```"
     + DS_END + "<｜tool▁calls▁end｜>", "", "", [("get_weather", {"location": "Tokyo"}, 0)]),
    ("glm47_test: thinking, content, typed call", "glm-4.7",
     [tool("calculate", count="integer", enabled="boolean")], None,
     "plan</think>Answer<tool_call>calculate<arg_key>count</arg_key><arg_value>3</arg_value>"
     "<arg_key>enabled</arg_key><arg_value>true</arg_value></tool_call>", "Answer", "plan",
     [("calculate", {"count": 3, "enabled": True}, 0)]),
    ("glm47_test: parallel calls", "glm-4.7", None, False,
     "<tool_call>first<arg_key>a</arg_key><arg_value>1</arg_value></tool_call>\n"
     "<tool_call>second<arg_key>b</arg_key><arg_value>2</arg_value></tool_call>", "", "",
     [("first", {"a": 1}, 0), ("second", {"b": 2}, 1)]),
    ("ministral_test: tool call", "ministral", WEATHER, None,
     "[TOOL_CALLS]get_weather[ARGS]{\"location\": \"San Francisco\"}", "", "",
     [("get_weather", {"location": "San Francisco"}, 0)]),
    ("ministral_test: nested args", "ministral", None, None,
     "[TOOL_CALLS]process_items[ARGS]{\"items\": [{\"id\": 1}, {\"id\": 2}, {\"id\": 3}]}", "",
     "", [("process_items", {"items": [{"id": 1}, {"id": 2}, {"id": 3}]}, 0)]),
    ("ministral_test: think block", "ministral", None, None,
     "[THINK]hmm[/THINK]Answer.", "Answer.", "hmm", []),
    ("mistral template: [TOOL_CALLS] array", "mistral", WEATHER, None,
     "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, "
     "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\"}}]", "", "",
     [("get_weather", {"city": "Paris"}, 0), ("get_weather", {"city": "Lima"}, 1)]),
    ("llama3.x template: JSON call", "llama3-json", WEATHER, None,
     "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "", "",
     [("get_weather", {"city": "Paris"}, 0)]),
    ("llama3.x template: python_tag", "llama3-json", WEATHER, None,
     "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "",
     "", [("get_weather", {"city": "Paris"}, 0)]),
    ("llama3.x template: plain answer", "llama3-json", WEATHER, None,
     "Paris is sunny.", "Paris is sunny.", "", []),
    ("hermes template: <tool_call> JSON", "hermes", WEATHER, None,
     "Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Bonn\"}}\n"
     "</tool_call>", "Checking.", "", [("get_weather", {"city": "Bonn"}, 0)]),
    ("lfm2_test: thinking_with_tool_call", "lfm2", None, None,
     "<think>Let me check the weather...</think>I'll get that for you.<|tool_call_start|>"
     "[get_weather(location=\"Paris\")]<|tool_call_end|>", "I'll get that for you.",
     "Let me check the weather...", [("get_weather", {"location": "Paris"}, 0)]),
    ("lfm2_test: complex args", "lfm2", None, None,
     "Processing data.<|tool_call_start|>[process_data(items=['item1','item2'], "
     "config={'enabled': True, 'threshold': 0.95})]<|tool_call_end|>", "Processing data.", "",
     [("process_data", {"items": ["item1", "item2"],
                        "config": {"enabled": True, "threshold": 0.95}}, 0)]),
    ("olmo3_test: tool call with multiple arguments (keyword names)", "olmo3", None, None,
     "<function_calls>book_flight(from=\"SFO\", to=\"NYC\", date=\"2024-01-15\")"
     "</function_calls>", "", "",
     [("book_flight", {"from": "SFO", "to": "NYC", "date": "2024-01-15"}, 0)]),
    ("olmo3_test: multiple tool calls", "olmo3", None, None,
     "<function_calls>get_weather(location=\"San Francisco\")\n"
     "get_weather(location=\"New York\")</function_calls>", "", "",
     [("get_weather", {"location": "San Francisco"}, 0),
      ("get_weather", {"location": "New York"}, 1)]),
    ("gemma4_test: thinking then content", "gemma4", None, True,
     "<|channel>thought\nLet me think about this...<channel|>The answer is 42.",
     "The answer is 42.", "Let me think about this...", []),
    ("gemma4_test: two thinking blocks", "gemma4", None, True,
     "<|channel>first thought<channel|><|channel>second thought<channel|>Final answer.",
     "Final answer.", "first thoughtsecond thought", []),
    ("gemma4: thinking dropped when not asked for", "gemma4", None, None,
     "<|channel>thought\nhidden<channel|>Shown.", "Shown.", "", []),
    ("gemma4_test: tool call with string args", "gemma4", None, None,
     '<|tool_call>call:get_weather{location:<|"|>Paris<|"|>,units:<|"|>metric<|"|>}'
     "<tool_call|>", "", "", [("get_weather", {"location": "Paris", "units": "metric"}, 0)]),
    ("gemma4_test: nested, null, bool, number", "gemma4", None, None,
     "<|tool_call>call:set_optional{value:null,nested:{value:null,on:true,n:42}}<tool_call|>",
     "", "", [("set_optional", {"value": None, "nested": {"value": None, "on": True, "n": 42}},
               0)]),
    ("gemma4_test: array of strings with quotes", "gemma4", None, None,
     '<|tool_call>call:process{items:[<|"|>a<|"|>,<|"|>b "quoted"<|"|>,<|"|>c<|"|>]}'
     "<tool_call|>", "", "", [("process", {"items": ["a", 'b "quoted"', "c"]}, 0)]),
    ("gemma4_test: multiline and escaped quotes", "gemma4", None, None,
     '<|tool_call>call:bash{command:<|"|>date\n<|"|>}<tool_call|><|tool_call>call:search'
     '{query:<|"|>first \\"quoted\\" then "raw", a:b<|"|>}<tool_call|>', "", "",
     [("bash", {"command": "date\n"}, 0),
      ("search", {"query": 'first \\"quoted\\" then "raw", a:b'}, 1)]),
    ("gemma4: post-call noise dropped", "gemma4", None, None,
     '<|tool_call>call:f{a:1}<tool_call|>\n<tool_call|><|tool_response>Done.', "Done.", "",
     [("f", {"a": 1}, 0)]),
    ("olmo3_think_test: thinking then content", "olmo3-think", None, None,
     "Reasoning here.</think>\n\nFinal answer.", "Final answer.", "Reasoning here.", []),
]

IDS = [g[0] for g in GOLDEN]


@pytest.mark.parametrize("case", GOLDEN, ids=IDS)
def test_golden_unsplit(case: Any) -> None:
    _, name, tools, think, output, content, thinking, calls = case
    assert run(name, [output], tools, think) == (content, thinking, calls)


@pytest.mark.parametrize("case", GOLDEN, ids=IDS)
def test_golden_every_two_way_split(case: Any) -> None:
    _, name, tools, think, output, content, thinking, calls = case
    for i in range(1, len(output)):
        got = run(name, [output[:i], output[i:]], tools, think)
        assert got == (content, thinking, calls), f"split at {i}: {output[:i]!r}"


@pytest.mark.parametrize("case", GOLDEN, ids=IDS)
def test_golden_char_by_char(case: Any) -> None:
    _, name, tools, think, output, content, thinking, calls = case
    assert run(name, list(output), tools, think) == (content, thinking, calls)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(GOLDEN), st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_golden_random_splits(case: Any, cuts: list[int]) -> None:
    _, name, tools, think, output, content, thinking, calls = case
    points = sorted({c % (len(output) + 1) for c in cuts})
    chunks = [output[a:b] for a, b in zip([0, *points], [*points, len(output)], strict=True)]
    assert run(name, chunks, tools, think) == (content, thinking, calls)


def test_registry_names_and_unknown() -> None:
    assert parsers.get("no-such-parser") is None
    for name in parsers.names():
        p = parsers.get(name)
        assert p is not None and p is not parsers.get(name)
    for name in ("harmony", "qwen3-coder", "qwen3.5", "deepseek3", "glm-4.7", "ministral",
                 "lfm2", "olmo3", "nemotron-3-nano", "hermes", "llama3-json", "mistral"):
        assert name in parsers.names()


def test_support_flags() -> None:
    def flags(n: str) -> tuple[bool, bool]:
        p = parsers.get(n)
        assert p is not None
        return p.has_tool_support(), p.has_thinking_support()
    assert flags("harmony") == (True, True)
    assert flags("qwen3-coder") == (True, False)
    assert flags("qwen3.5") == (True, True)
    assert flags("qwen3") == (True, False)
    assert flags("passthrough") == (False, False)


def test_prefill_with_content_starts_in_content() -> None:
    last = Message(role="assistant", content="The answer")
    assert run("qwen3.5", [" is 4."], None, True, last) == (" is 4.", "", [])
    assert run("harmony", [" is 4."], None, True, last) == (" is 4.", "", [])


def test_bad_call_body_is_kept_as_content() -> None:
    out = run("hermes", ["<tool_call>{not json</tool_call>"])
    assert out == ("<tool_call>{not json</tool_call>", "", [])


def test_unterminated_call_at_end_still_parses() -> None:
    assert run("qwen3-coder", ["<tool_call>\n<function=f>\n<parameter=a>\nx\n</parameter>\n"
                               "</function>\n"]) == ("", "", [("f", {"a": "x"}, 0)])


def test_held_partial_tag_flushed_at_finish() -> None:
    assert run("qwen3-coder", ["see <tool_ca"]) == ("see <tool_ca", "", [])


def test_python_calls_never_evaluate() -> None:
    out = run("lfm2", ["<|tool_call_start|>[__import__('os').system('x')]<|tool_call_end|>"])
    assert out[2] == []


def test_long_streamed_json_call_body() -> None:
    items = ", ".join(f'{{"name": "f", "arguments": {{"i": {i}, "s": "a}}\\\\"}}}}' for i in
                      range(300))
    out = "[TOOL_CALLS] [" + items + "] done"
    content, _, calls = run("mistral", list(out))
    assert content == "done"
    assert [c[1]["i"] for c in calls] == list(range(300))
    assert calls[0][1]["s"] == 'a}\\'


def test_parser_for_go_template_tool_tags() -> None:
    assert parsers.for_tool_tag("<tool_call>") == "hermes"
    assert parsers.for_tool_tag("[TOOL_CALLS] ") == "mistral"
    assert parsers.for_tool_tag("{") == "llama3-json"
    assert parsers.for_tool_tag("<|python_tag|>") == "llama3-json"
    assert parsers.for_tool_tag("<｜tool▁calls▁begin｜>") == "deepseek-tools"
    assert parsers.for_tool_tag("<function_call>") is None
    for tag in ("<tool_call>", "[TOOL_CALLS]", "{", "<｜tool▁calls▁begin｜>"):
        name = parsers.for_tool_tag(tag)
        assert name is not None and parsers.get(name) is not None


def test_gemma4_unterminated_thinking_never_leaks_when_off() -> None:
    assert run("gemma4", ["<|channel>thought\nsecret"]) == ("", "", [])
    assert run("gemma4", ["<|channel>thought\nshown"], think=True) == ("", "shown", [])
