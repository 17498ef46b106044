"""Gemma 4 against Ollama's reference cases (expected prompts copied verbatim into
golden/gemma4_reference.json from gemma4_reference_test.go, which checks them against the
E2B model's own Jinja template)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ollamapy.api.inference import Message, Tool
from ollamapy.inference import renderers

GOLDEN = json.loads((Path(__file__).parent / "golden" / "gemma4_reference.json")
                    .read_text())["expected"]


def m(role: str, content: str = "", **kw: Any) -> Message:
    return Message(role=role, content=content, **kw)


def call(name: str, id: str | None = None, **args: Any) -> dict[str, Any]:
    return {"id": id, "function": {"name": name, "arguments": args}}


def tool(name: str, desc: str, props: dict[str, Any] | None, required: list[str] | None = None,
         ptype: str = "object") -> Tool:
    params: dict[str, Any] = {"type": ptype}
    if props is not None:
        params["properties"] = props
    if required:
        params["required"] = required
    return Tool(function={"name": name, "description": desc, "parameters": params})


BASH = tool("bash", "Run a command", {"command": {"type": "string",
                                                  "description": "The command"}}, ["command"])
READ = tool("read", "Read a file", {"path": {"type": "string", "description": "File path"}},
            ["path"])
BASH_SMALL = tool("bash", "Run", {"command": {"type": "string", "description": "Cmd"}},
                  ["command"])
WEATHER = tool("get_weather", "Get weather", {"city": {"type": "string", "description": "City"}})
ADD = tool("add", "Add numbers", {"a": {"type": "number"}, "b": {"type": "number"}})
FLAG = tool("set_flag", "Set a flag", {"enabled": {"type": "boolean",
                                                   "description": "Flag value"}})
MODE = tool("set_mode", "Set mode", {"mode": {"type": "string", "description": "The mode",
                                              "enum": ["fast", "slow"]}})
NESTED = tool("create", "Create item", {
    "name": {"type": "string", "description": "Name"},
    "config": {"type": "object", "description": "Config",
               "properties": {"enabled": {"type": "boolean", "description": "On/off"}}}})
ARRAY = tool("batch", "Run batch", {"commands": {"type": "array", "description": "Commands",
                                                 "items": {"type": "string"}}})
UNION = tool("maybe_name", "Test nullable union", {"name": {"type": ["string", "null"],
                                                             "description": "Name"}})
COUNT = tool("count", "Count items", {"n": {"type": "number"}})
CONFIGURE = tool("configure", "Configure", {"config": {"type": "object",
                                                       "description": "Config"}})
BATCH_IDS = tool("batch", "Run batch", {"ids": {"type": "array", "description": "IDs"}})
LEVEL = tool("set_level", "Set level", {"level": {"type": "string", "enum": ["low", "high"]}})
SEARCH = tool("search", "Search", {"query": {"type": "string", "description": "Search query"},
                                   "limit": {"type": "number"},
                                   "offset": {"type": "number", "description": "Start offset"}})
USER = tool("create_user", "Create user", {"profile": {
    "type": "object", "description": "Profile", "required": ["name"],
    "properties": {"name": {"type": "string", "description": "Name"},
                   "age": {"type": "number", "description": "Age"}}}})
CALC = tool("calc", "Calculate", {"value": {"type": "number", "description": "Value"}})
RAW = tool("raw", "Raw input", None)
MOVE = tool("move", "Move", {"x": {"type": "number", "description": "X"},
                             "y": {"type": "number", "description": "Y"}}, ["x", "y"])
TAGS = tool("tag", "Tag items", {"tags": {"type": "array", "description": "Tags"}})
UPDATE = tool("update", "Update settings", {"settings": {"type": "object", "properties": {
    "verbose": {"type": "boolean", "description": "Verbose mode"}}}})
LS = [call("bash", command="ls")]
FILES = "file1.txt\nfile2.txt"

CASES: dict[str, tuple[list[Message], list[Tool] | None, Any]] = {
    "user_only": ([m("user", "Hello")], None, None),
    "system_user": ([m("system", "You are helpful."), m("user", "Hi")], None, None),
    "developer_user": ([m("developer", "You are helpful."), m("user", "Hi")], None, None),
    "tools_no_system": ([m("user", "Hi")], [BASH], None),
    "system_tools": ([m("system", "You are helpful."), m("user", "Hi")], [BASH], None),
    "thinking_no_system": ([m("user", "Hi")], None, True),
    "thinking_system": ([m("system", "You are helpful."), m("user", "Hi")], None, True),
    "thinking_tools": ([m("user", "Hi")], [BASH], True),
    "thinking_system_tools": ([m("system", "You are helpful."), m("user", "Hi")], [BASH], True),
    "developer_tools_thinking_trimmed": (
        [m("developer", "  Prefer terse answers.\nUse tools when needed.  "), m("user", "Hi")],
        [BASH, READ], True),
    "thinking_explicitly_disabled": ([m("user", "Hi")], None, False),
    "multi_turn": ([m("system", "You are helpful."), m("user", "Hi"), m("assistant", "Hello!"),
                    m("user", "More")], None, None),
    "tool_call_response": ([m("system", "You are helpful."), m("user", "List files"),
                            m("assistant", tool_calls=LS), m("tool", FILES, tool_name="bash")],
                           [BASH], None),
    "tool_call_pending_response": ([m("system", "You are helpful."), m("user", "List files"),
                                    m("assistant", "Let me check.", tool_calls=LS)], [BASH],
                                   None),
    "full_round_trip": ([m("system", "You are helpful."), m("user", "List files"),
                         m("assistant", tool_calls=LS), m("tool", FILES, tool_name="bash"),
                         m("assistant", "Here are the files."), m("user", "Read file1.txt")],
                        [BASH, READ], None),
    "multiple_tool_calls": ([m("system", "You are helpful."), m("user", "List and read"),
                             m("assistant", tool_calls=[*LS, call("read", path="go.mod")]),
                             m("tool", FILES, tool_name="bash"),
                             m("tool", "module example.com/foo", tool_name="read")],
                            [BASH, READ], None),
    "multiple_tool_calls_with_thinking_ids_and_continuation": (
        [m("system", "You are a coding assistant."), m("user", "List files, then read config."),
         m("assistant", thinking="Need the directory listing before reading the config.",
           tool_calls=[call("bash", id="call_bash", command="ls -la"),
                       call("read", id="call_read", path="config.json")]),
         m("tool", '{"debug": true}', tool_call_id="call_read"),
         m("tool", "config.json\nmain.go", tool_call_id="call_bash"),
         m("assistant", "Config loaded.")], [BASH, READ], True),
    "strip_thinking_history": ([m("user", "What is 2+2?"),
                                m("assistant", "<|channel>thought\nThinking...<channel|>4"),
                                m("user", "And 3+3?")], None, None),
    "assistant_content_with_tool_call": (
        [m("user", "Weather?"), m("assistant", "Let me check.",
                                  tool_calls=[call("get_weather", city="Paris")]),
         m("tool", "Sunny", tool_name="get_weather")], [WEATHER], None),
    "numeric_arguments": ([m("user", "Add"), m("assistant", tool_calls=[call("add", a=1.0,
                                                                             b=2.0)]),
                           m("tool", '{"result": 3}', tool_name="add")], [ADD], None),
    "boolean_argument": ([m("user", "Set flag"),
                          m("assistant", tool_calls=[call("set_flag", enabled=True)]),
                          m("tool", "done", tool_name="set_flag")], [FLAG], None),
    "tool_with_enum": ([m("user", "Test")], [MODE], None),
    "unicode_content": ([m("user", "こんにちは")], None, None),
    "newlines_in_content": ([m("user", "Line 1\nLine 2\nLine 3")], None, None),
    "json_tool_response_then_user": (
        [m("user", "Weather?"), m("assistant", tool_calls=[call("get_weather", city="Tokyo")]),
         m("tool", '{"temperature": 15, "weather": "sunny"}', tool_name="get_weather"),
         m("user", "Thanks!")], [WEATHER], None),
    "adjacent_assistants_continue_same_model_turn": (
        [m("user", "Start"), m("assistant", "One."), m("assistant", "Two."), m("user", "More")],
        None, None),
    "sorted_args": ([m("user", "Go"), m("assistant", tool_calls=[call(
        "bash", zzz="last", aaa="first", mmm="middle")]), m("tool", "ok", tool_name="bash")],
        [BASH_SMALL], None),
    "user_content_trimmed": ([m("user", "  hello  ")], None, None),
    "empty_tool_args": ([m("user", "Go"), m("assistant", tool_calls=[call("bash")]),
                         m("tool", "ok", tool_name="bash")], [BASH_SMALL], None),
    "nested_object_tool": ([m("user", "Create")], [NESTED], None),
    "array_tool": ([m("user", "Batch")], [ARRAY], None),
    "typed_property_union_type": ([m("user", "Hi")], [UNION], None),
    "assistant_whitespace_trimmed": ([m("user", "Hi"), m("assistant", "  spaced  "),
                                      m("user", "More")], None, None),
    "three_tool_responses": (
        [m("user", "Do three things"),
         m("assistant", tool_calls=[call("bash", command=c) for c in "abc"]),
         *[m("tool", f"result-{c}", tool_name="bash") for c in "abc"]], [BASH_SMALL], None),
    "tool_calls_no_content": ([m("user", "Go"), m("assistant", tool_calls=LS),
                               m("tool", "files", tool_name="bash")], [BASH_SMALL], None),
    "multiple_thinking_blocks": (
        [m("user", "Hi"),
         m("assistant", "<|channel>Think1<channel|>Middle<|channel>Think2<channel|>Done"),
         m("user", "More")], None, None),
    "property_no_description": ([m("user", "Count")], [COUNT], None),
    "system_message_trimmed": ([m("system", "  You are helpful.  "), m("user", "Hi")], None,
                               None),
    "nested_map_args": (
        [m("user", "Go"), m("assistant", tool_calls=[call("configure", config={
            "db": {"host": "localhost", "port": 5432.0}})]),
         m("tool", "ok", tool_name="configure")], [CONFIGURE], None),
    "array_in_args": ([m("user", "Go"), m("assistant", tool_calls=[call("batch", ids=[1.0, 2.0,
                                                                                      3.0])]),
                       m("tool", "done", tool_name="batch")], [BATCH_IDS], None),
    "mixed_array_args": ([m("user", "Go"),
                          m("assistant", tool_calls=[call("batch", ids=["a", 1.0, True])]),
                          m("tool", "done", tool_name="batch")], [BATCH_IDS], None),
    "enum_no_description": ([m("user", "Set")], [LEVEL], None),
    "system_whitespace_only": ([m("system", "   "), m("user", "Hi")], None, None),
    "empty_assistant_content": ([m("user", "Hi"), m("assistant", ""), m("user", "More")], None,
                                None),
    "map_arg_string_keys": ([m("user", "Go"),
                             m("assistant", tool_calls=[call("configure",
                                                             config={"key": "value"})]),
                             m("tool", "ok", tool_name="configure")], [CONFIGURE], None),
    "mixed_desc_no_desc": ([m("user", "Search")], [SEARCH], None),
    "tool_content_trimmed": ([m("user", "Go"), m("assistant", tool_calls=LS),
                              m("tool", "  result  ", tool_name="bash")], [BASH_SMALL], None),
    "empty_system_message": ([m("system", ""), m("user", "Hi")], None, None),
    "nested_object_with_required": ([m("user", "Create")], [USER], None),
    "float_argument": ([m("user", "Calc"), m("assistant", tool_calls=[call("calc", value=3.14)]),
                        m("tool", "ok", tool_name="calc")], [CALC], None),
    "thinking_in_last_assistant": ([m("user", "Hi"),
                                    m("assistant", "<|channel>thinking<channel|>Result")],
                                   None, None),
    "tool_content_multiline_whitespace": (
        [m("user", "Go"), m("assistant", tool_calls=LS),
         m("tool", "\n  file1\n  file2\n", tool_name="bash")], [BASH_SMALL], None),
    "tool_params_type_only": ([m("user", "Raw")], [RAW], None),
    "multiple_required": ([m("user", "Move")], [MOVE], None),
    "assistant_only_thinking": ([m("user", "Hi"),
                                 m("assistant", "<|channel>just thinking<channel|>"),
                                 m("user", "More")], None, None),
    "thinking_with_tool_calls": (
        [m("system", "You are helpful."), m("user", "List files"),
         m("assistant", "<|channel>I should use bash<channel|>", tool_calls=LS),
         m("tool", "file1.txt", tool_name="bash"), m("assistant", "Here are the files."),
         m("user", "Thanks")], [BASH_SMALL], True),
    "array_without_items": ([m("user", "Tag")], [TAGS], None),
    "object_no_desc_with_properties": ([m("user", "Update")], [UPDATE], None),
    "chained_tool_calls": (
        [m("user", "Set up the project"),
         m("assistant", tool_calls=[call("bash", command="mkdir src")]),
         m("tool", "", tool_name="bash"),
         m("assistant", tool_calls=[call("bash", command="touch src/main.go")]),
         m("tool", "", tool_name="bash"), m("assistant", "Done."), m("user", "Thanks")],
        [BASH_SMALL], None),
    "tool_call_thinking_with_remaining_content": (
        [m("user", "List files"),
         m("assistant", "<|channel>I need to check the directory<channel|>Let me list the files.",
           tool_calls=LS),
         m("tool", "main.go\ngo.mod", tool_name="bash"), m("user", "OK")], [BASH_SMALL], None),
    "argument_with_newlines": (
        [m("user", "Run it"),
         m("assistant", tool_calls=[call("bash", command="echo hello\necho world")]),
         m("tool", "hello\nworld", tool_name="bash")], [BASH_SMALL], None),
    "empty_string_argument": ([m("user", "Go"), m("assistant", tool_calls=[call("bash",
                                                                             command="")]),
                               m("tool", "error", tool_name="bash")], [BASH_SMALL], None),
    "null_tool_arguments": (
        [m("user", "Set optional"),
         m("assistant", tool_calls=[call("set_optional", nested={"value": None}, value=None)])],
        None, None),
    "historical_tool_call_thinking_omitted_before_later_user": (
        [m("user", "List files"),
         m("assistant", thinking="Need the file list before answering.", tool_calls=LS),
         m("tool", "file1.txt", tool_name="bash"), m("user", "Now answer")], [BASH_SMALL], True),
    "terminal_tool_response_adds_thinking_cue_when_thinking_enabled": (
        [m("user", "List files"), m("assistant", tool_calls=LS),
         m("tool", "file1.txt", tool_name="bash")], [BASH_SMALL], True),
}


def test_every_golden_has_a_case() -> None:
    assert set(CASES) == set(GOLDEN)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gemma4_reference(name: str) -> None:
    msgs, tools, think = CASES[name]
    r = renderers.get("gemma4")
    assert r is not None
    assert r.render(msgs, tools, think) == GOLDEN[name]


def test_gemma4_large_empty_block_when_not_thinking() -> None:
    r = renderers.get("gemma4-large")
    assert r is not None
    assert r.render([m("user", "Hi")], None, False).endswith(
        "<|turn>model\n<|channel>thought\n<channel|>")
    assert r.render([m("user", "Hi")], None, True).endswith("<|turn>model\n")
