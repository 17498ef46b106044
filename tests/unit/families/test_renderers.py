"""Family renderers against the expected prompts in Ollama's renderer tests
(model/renderers/*_test.go at ollama fb307609)."""

from __future__ import annotations

from typing import Any

import pytest

from ollamapy.api.inference import Message, Tool
from ollamapy.inference import renderers
from ollamapy.inference.renderers import _gojson
from ollamapy.inference.renderers.qwen3coder import TOOL_INSTRUCTIONS


def m(role: str, content: str = "", **kw: Any) -> Message:
    return Message(role=role, content=content, **kw)


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"function": {"name": name, "arguments": args}}


def render(name: str, msgs: list[Message], tools: list[Tool] | None = None,
           think: Any = None) -> str:
    r = renderers.get(name)
    assert r is not None
    return r.render(msgs, tools, think)


def fn_tool(name: str, desc: str, props: dict[str, Any], required: list[str] | None = None
            ) -> Tool:
    params: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        params["required"] = required
    return Tool(function={"name": name, "description": desc, "parameters": params})


CODER_INSTR = TOOL_INSTRUCTIONS


def test_qwen3coder_basic() -> None:
    got = render("qwen3-coder", [m("system", "You are a helpful assistant."),
                                 m("user", "Hello, how are you?")])
    assert got == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                   "<|im_start|>user\nHello, how are you?<|im_end|>\n<|im_start|>assistant\n")


def test_qwen3coder_with_tools_and_response() -> None:
    tools = [fn_tool("get_weather", "Get the current weather in a given location",
                     {"unit": {"type": "string", "enum": ["celsius", "fahrenheit"],
                               "description": "The unit of temperature"}}, ["unit"])]
    msgs = [
        m("system", "You are a helpful assistant with access to tools."),
        m("user", "What is the weather like in San Francisco?"),
        m("assistant", "I'll check the weather in San Francisco for you.",
          tool_calls=[call("get_weather", unit="fahrenheit")]),
        m("tool", '{"location": "San Francisco, CA", "temperature": 68, "condition": "partly '
          'cloudy", "humidity": 65, "wind_speed": 12}', tool_name="get_weather"),
        m("user", "That sounds nice! What about New York?"),
    ]
    want = ("<|im_start|>system\nYou are a helpful assistant with access to tools.\n\n# Tools\n\n"
            "You have access to the following functions:\n\n<tools>\n<function>\n"
            "<name>get_weather</name>\n<description>Get the current weather in a given location"
            "</description>\n<parameters>\n<parameter>\n<name>unit</name>\n<type>string</type>\n"
            "<description>The unit of temperature</description>\n"
            "<enum>[\"celsius\",\"fahrenheit\"]</enum>\n</parameter>\n<required>[\"unit\"]"
            "</required>\n</parameters>\n</function>\n</tools>" + CODER_INSTR + "<|im_end|>\n"
            "<|im_start|>user\nWhat is the weather like in San Francisco?<|im_end|>\n"
            "<|im_start|>assistant\nI'll check the weather in San Francisco for you.\n\n"
            "<tool_call>\n<function=get_weather>\n<parameter=unit>\nfahrenheit\n</parameter>\n"
            "</function>\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n"
            "{\"location\": \"San Francisco, CA\", \"temperature\": 68, \"condition\": \"partly "
            "cloudy\", \"humidity\": 65, \"wind_speed\": 12}\n</tool_response><|im_end|>\n"
            "<|im_start|>user\nThat sounds nice! What about New York?<|im_end|>\n"
            "<|im_start|>assistant\n")
    assert render("qwen3-coder", msgs, tools) == want


def test_qwen3coder_parallel_calls_and_responses() -> None:
    tools = [fn_tool("double", "Double a number",
                     {"number": {"type": "string", "description": "The number to double"}}),
             fn_tool("triple", "Triple a number",
                     {"number": {"type": "string", "description": "The number to triple"}})]
    msgs = [m("system", "You are a helpful assistant with access to tools."),
            m("user", "call double(1) and triple(2)"),
            m("assistant", "I'll call double(1) and triple(2) for you.",
              tool_calls=[call("double", number="1"), call("triple", number="2")]),
            m("tool", '{"number": 2}', tool_name="double"),
            m("tool", '{"number": 6}', tool_name="triple")]
    got = render("qwen3-coder", msgs, tools)
    assert ("<tools>\n<function>\n<name>double</name>\n<description>Double a number"
            "</description>\n<parameters>\n<parameter>\n<name>number</name>\n<type>string</type>"
            "\n<description>The number to double</description>\n</parameter>\n</parameters>\n"
            "</function>\n<function>\n<name>triple</name>") in got
    assert got.endswith(
        "<|im_start|>user\ncall double(1) and triple(2)<|im_end|>\n<|im_start|>assistant\n"
        "I'll call double(1) and triple(2) for you.\n\n<tool_call>\n<function=double>\n"
        "<parameter=number>\n1\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n"
        "<function=triple>\n<parameter=number>\n2\n</parameter>\n</function>\n</tool_call>"
        "<|im_end|>\n<|im_start|>user\n<tool_response>\n{\"number\": 2}\n</tool_response>\n"
        "<tool_response>\n{\"number\": 6}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")


def test_qwen3coder_prefill_and_json_args() -> None:
    assert render("qwen3-coder", [m("system", "You are a helpful assistant."),
                                  m("user", "Tell me something interesting."),
                                  m("assistant", "I'll tell you something interesting about cats")]
                  ).endswith("<|im_start|>assistant\nI'll tell you something interesting about "
                             "cats")
    got = render("qwen3-coder", [m("user", "call tool"),
                                 m("assistant", tool_calls=[call("echo", payload={"foo": "bar"})]),
                                 m("tool", '{"payload": {"foo": "bar"}}', tool_name="echo")])
    assert got == ("<|im_start|>user\ncall tool<|im_end|>\n<|im_start|>assistant\n\n<tool_call>\n"
                   "<function=echo>\n<parameter=payload>\n{\"foo\":\"bar\"}\n</parameter>\n"
                   "</function>\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n"
                   "{\"payload\": {\"foo\": \"bar\"}}\n</tool_response><|im_end|>\n"
                   "<|im_start|>assistant\n")


def test_qwen3coder_default_system_with_tools_only() -> None:
    got = render("qwen3-coder", [m("user", "hi")], [fn_tool("f", "", {})])
    assert got.startswith("<|im_start|>system\nYou are Qwen, a helpful AI assistant that can "
                          "interact with a computer to solve tasks.\n\n# Tools")


@pytest.mark.parametrize(("v", "want"), [("foo", "foo"), ({"foo": "bar"}, '{"foo":"bar"}'),
                                         (1, "1"), (True, "true"), (None, "null")])
def test_format_tool_call_argument(v: Any, want: str) -> None:
    assert _gojson.arg_text(v) == want


def test_qwen3vl_thinking_goldens() -> None:
    r = "qwen3-vl-thinking"
    assert render(r, [m("system", "You are a helpful assistant."),
                      m("user", "Hello, how are you?")]) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "Hello, how are you?<|im_end|>\n<|im_start|>assistant\n<think>\n")
    poem = "To make this story interesting, I will speak in poetry."
    assert render(r, [m("user", "Tell me a story in two sentences."),
                      m("assistant", "abc", thinking=poem)]) == (
        "<|im_start|>user\nTell me a story in two sentences.<|im_end|>\n<|im_start|>assistant\n"
        f"<think>\n{poem}\n</think>\n\nabc")
    assert render(r, [m("user", "Tell me a story in two sentences."),
                      m("assistant", thinking=poem)]) == (
        "<|im_start|>user\nTell me a story in two sentences.<|im_end|>\n<|im_start|>assistant\n"
        f"<think>\n{poem}")


def test_qwen3vl_instruct_tools_json_and_images() -> None:
    tools = [fn_tool("get_weather", "Get weather", {"location": {"type": "string",
                                                                 "description": "City"}},
                     ["location"])]
    got = render("qwen3-vl-instruct", [m("user", "look", images=["aGk="]),
                                       m("assistant", "ok", tool_calls=[call(
                                           "get_weather", location="Paris")])], tools)
    # Ollama's tool line (struct field order: required before properties)
    assert ('\n{"type": "function", "function": {"name": "get_weather", "description": '
            '"Get weather", "parameters": {"type": "object", "required": ["location"], '
            '"properties": {"location": {"type": "string", "description": "City"}}}}}\n'
            '</tools>') in got
    assert "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>look<|im_end|>" in got
    assert got.endswith('ok\n<tool_call>\n{"name": "get_weather", "arguments": '
                        '{"location": "Paris"}}\n</tool_call>')
    marked = renderers.get("qwen3-vl-instruct", image_marker="<__media__>")
    assert marked is not None
    assert "<__media__>look" in marked.render([m("user", "look", images=["aGk="])], None, None)


def test_qwen35_goldens() -> None:
    assert render("qwen3.5", [m("user", "hello")], think=False).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert render("qwen3.5", [m("user", "hello")]).endswith("<|im_start|>assistant\n<think>\n")
    tools = [fn_tool("get_weather", "", {"location": {"type": "string"}}, ["location"])]
    got = render("qwen3.5", [m("system", "You are a helpful assistant."),
                             m("user", "What's the weather in Paris?"),
                             m("assistant", "I'll check.",
                               tool_calls=[call("get_weather", location="Paris")]),
                             m("tool", "22C"), m("user", "Thanks")], tools)
    assert "<function=example_function_name>" in got
    assert ("<tool_call>\n<function=get_weather>\n<parameter=location>\nParis\n</parameter>\n"
            "</function>\n</tool_call>") in got
    assert got.index("# Tools") < got.index("You are a helpful assistant.")
    # historical reasoning before the last user query is dropped
    got = render("qwen3.5", [m("user", "Run add."),
                             m("assistant", "I'll run it.", thinking="Need to call add.",
                               tool_calls=[call("add", a=2, b=3)]),
                             m("tool", "5"), m("user", "Summarize the results.")])
    assert "Need to call add." not in got
    assert ("<tool_call>\n<function=add>\n<parameter=a>\n2\n</parameter>\n<parameter=b>\n3\n"
            "</parameter>\n</function>\n</tool_call>") in got


def test_registry() -> None:
    assert renderers.get("nope") is None
    for name in renderers.names():
        assert renderers.get(name) is not None


DS_BOS, DS_A, DS_U, DS_EOS = ("<｜begin▁of▁sentence｜>", "<｜Assistant｜>", "<｜User｜>",
                              "<｜end▁of▁sentence｜>")
DS_CALL = ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>"
           "{\"location\":\"Paris\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>")


def test_deepseek31_goldens() -> None:
    r = "deepseek3.1"
    assert render(r, [m("user", "Hello, how are you?")]) == (
        f"{DS_BOS}{DS_U}Hello, how are you?{DS_A}</think>")
    assert render(r, [m("system", "First instruction"), m("system", "Second instruction"),
                      m("user", "Hello")]) == (
        f"{DS_BOS}First instruction\n\nSecond instruction{DS_U}Hello{DS_A}</think>")
    assert render(r, [m("system", "You are a helpful assistant."),
                      m("user", "Hello, how are you?")], think=True) == (
        f"{DS_BOS}You are a helpful assistant.{DS_U}Hello, how are you?{DS_A}<think>")
    assert render(r, [m("user", "What is the capital of France?"),
                      m("assistant", "The capital of France is Paris."),
                      m("user", "Fantastic!")]) == (
        f"{DS_BOS}{DS_U}What is the capital of France?{DS_A}</think>The capital of France is "
        f"Paris.{DS_EOS}{DS_U}Fantastic!{DS_A}</think>")
    assert render(r, [m("user", "What's the weather in Paris?"),
                      m("assistant", "I'll check the weather for you.",
                        tool_calls=[call("get_weather", location="Paris")])]) == (
        f"{DS_BOS}{DS_U}What's the weather in Paris?{DS_A}</think>I'll check the weather for "
        f"you.{DS_CALL}{DS_EOS}")
    assert render(r, [m("user", "What's the weather?"),
                      m("assistant", tool_calls=[call("get_weather", location="Paris")]),
                      m("tool", "Temperature: 22°C, Sunny")]) == (
        f"{DS_BOS}{DS_U}What's the weather?{DS_A}</think>{DS_CALL}{DS_EOS}"
        "<｜tool▁output▁begin｜>Temperature: 22°C, Sunny<｜tool▁output▁end｜>")
    assert render(r, [m("user", "Think about this"),
                      m("assistant", "I'm thinking...</think>The answer is 42.")]) == (
        f"{DS_BOS}{DS_U}Think about this{DS_A}</think>The answer is 42.{DS_EOS}")
    tools = [fn_tool("get_weather", "Get current weather information",
                     {"location": {"type": "string", "description": "City name"}}, ["location"])]
    assert render(r, [m("system", "You are a helpful assistant."),
                      m("user", "What's the weather like?")], tools, think=False) == (
        f"{DS_BOS}You are a helpful assistant.\n\n## Tools\nYou have access to the following "
        "tools:\n\n### get_weather\nDescription: Get current weather information\n\n"
        "Parameters: {\"type\":\"object\",\"required\":[\"location\"],\"properties\":"
        "{\"location\":{\"type\":\"string\",\"description\":\"City name\"}}}\n\n"
        "IMPORTANT: ALWAYS adhere to this exact format for tool use:\n<｜tool▁calls▁begin｜>"
        "<｜tool▁call▁begin｜>tool_call_name<｜tool▁sep｜>tool_call_arguments<｜tool▁call▁end｜>"
        "{{additional_tool_calls}}<｜tool▁calls▁end｜>\n\nWhere:\n\n- `tool_call_name` must be "
        "an exact match to one of the available tools\n- `tool_call_arguments` must be valid "
        "JSON that strictly follows the tool's Parameters Schema\n- For multiple tool calls, "
        f"chain them directly without separators or spaces\n{DS_U}What's the weather like?"
        f"{DS_A}</think>")
    ds = renderers.get(r)
    assert getattr(ds, "leading_bos", "") == DS_BOS


GLM_TOOLS = (
    "[gMASK]<sop><|system|>\n# Tools\n\nYou may call one or more functions to assist with the "
    "user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:"
    "\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
    "\"description\": \"Get weather\", \"parameters\": {\"type\": \"object\", \"required\": "
    "[\"location\"], \"properties\": {\"location\": {\"type\": \"string\"}}}}}\n</tools>\n\n"
    "For each function call, output the function name and arguments within the following XML "
    "format:\n<tool_call>{function-name}<arg_key>{arg-key-1}</arg_key><arg_value>{arg-value-1}"
    "</arg_value><arg_key>{arg-key-2}</arg_key><arg_value>{arg-value-2}</arg_value>..."
    "</tool_call>")


def test_glm47_goldens() -> None:
    r = "glm-4.7"
    assert render(r, [m("user", "Hello")]) == "[gMASK]<sop><|user|>Hello<|assistant|><think>"
    assert render(r, [m("user", "Hello")], think=False) == (
        "[gMASK]<sop><|user|>Hello<|assistant|></think>")
    assert render(r, [m("system", "You are helpful."), m("user", "Hello")]) == (
        "[gMASK]<sop><|system|>You are helpful.<|user|>Hello<|assistant|><think>")
    assert render(r, [m("user", "Hi"), m("assistant", "Hello there"),
                      m("user", "How are you?")]) == (
        "[gMASK]<sop><|user|>Hi<|assistant|></think>Hello there<|user|>How are you?"
        "<|assistant|><think>")
    assert render(r, [m("user", "Answer with reasoning."),
                      m("assistant", "Done.", thinking="Plan.")]) == (
        "[gMASK]<sop><|user|>Answer with reasoning.<|assistant|><think>Plan.</think>Done."
        "<|assistant|><think>")
    tools = [fn_tool("get_weather", "Get weather", {"location": {"type": "string"}},
                     ["location"])]
    assert render(r, [m("user", "Weather?"),
                      m("assistant", tool_calls=[call("get_weather", location="Tokyo",
                                                      unit="celsius")]),
                      m("tool", "{\"temperature\":22}")], tools) == (
        GLM_TOOLS + "<|user|>Weather?<|assistant|></think><tool_call>get_weather<arg_key>"
        "location</arg_key><arg_value>Tokyo</arg_value><arg_key>unit</arg_key><arg_value>"
        "celsius</arg_value></tool_call><|observation|><tool_response>{\"temperature\":22}"
        "</tool_response><|assistant|><think>")
    assert render(r, [m("user", "Compare weather"),
                      m("assistant", tool_calls=[call("get_weather", location="Tokyo"),
                                                 call("get_weather", location="Paris")]),
                      m("tool", "{\"temperature\":22}"), m("tool", "{\"temperature\":18}")],
                  tools) == (
        GLM_TOOLS + "<|user|>Compare weather<|assistant|></think><tool_call>get_weather"
        "<arg_key>location</arg_key><arg_value>Tokyo</arg_value></tool_call><tool_call>"
        "get_weather<arg_key>location</arg_key><arg_value>Paris</arg_value></tool_call>"
        "<|observation|><tool_response>{\"temperature\":22}</tool_response><tool_response>"
        "{\"temperature\":18}</tool_response><|assistant|><think>")


OLMO_FUNCS = ('<functions>[{"type": "function", "function": {"name": "get_weather", '
              '"description": "Get the current weather", "parameters": {"type": "object", '
              '"required": ["location"], "properties": {"location": {"type": "string", '
              '"description": "The city"}}}}}]</functions>')
OLMO_WITH = ("You are provided with function signatures within <functions></functions> XML "
             "tags. You may call one or more functions to assist with the user query. Output "
             "any function calls within <function_calls></function_calls> XML tags. Do not make "
             "assumptions about what values to plug into functions.")


def test_olmo3_goldens() -> None:
    r = "olmo3"
    assert render(r, [m("user", "Hello!")]) == (
        "<|im_start|>system\nYou are a helpful function-calling AI assistant. You do not "
        "currently have access to any functions. <functions></functions><|im_end|>\n"
        "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n")
    tools = [fn_tool("get_weather", "Get the current weather",
                     {"location": {"type": "string", "description": "The city"}},
                     ["location"])]
    assert render(r, [m("user", "What is the weather?")], tools) == (
        "<|im_start|>system\nYou are a helpful function-calling AI assistant. " + OLMO_WITH
        + OLMO_FUNCS + "<|im_end|>\n<|im_start|>user\nWhat is the weather?<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert render(r, [m("system", "You are a helpful assistant."),
                      m("user", "What is the weather in SF?"),
                      m("assistant", "Let me check the weather.",
                        tool_calls=[call("get_weather", location="San Francisco")]),
                      m("tool", '{"temperature": 68}')], tools) == (
        "<|im_start|>system\nYou are a helpful assistant." + OLMO_FUNCS + "<|im_end|>\n"
        "<|im_start|>user\nWhat is the weather in SF?<|im_end|>\n<|im_start|>assistant\n"
        'Let me check the weather.<function_calls>get_weather(location="San Francisco")'
        "</function_calls><|im_end|>\n<|im_start|>environment\n{\"temperature\": 68}"
        "<|im_end|>\n<|im_start|>assistant\n")
    assert render(r, [m("system", "You are a helpful assistant."), m("user", "Hello"),
                      m("assistant", "Hi there!"), m("user", "How are you?")]) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello"
        "<|im_end|>\n<|im_start|>assistant\nHi there!<|im_end|>\n<|im_start|>user\nHow are "
        "you?<|im_end|>\n<|im_start|>assistant\n")
    assert render("olmo3.1", [m("user", "Hi")]).startswith(
        "<|im_start|>system\nYou are Olmo, a helpful AI assistant built by Ai2.")
    assert render(r, [m("user", "Hi"), m("assistant", "Hel")]).endswith(
        "<|im_start|>assistant\nHel")


LFM = "<|startoftext|>"


def test_lfm2_goldens() -> None:
    r, rt = "lfm2", "lfm2-thinking"
    assert render(r, [m("user", "Hello")]) == (
        f"{LFM}<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n")
    bare = [Tool(function={"name": "get_weather", "parameters": {"type": "object"}})]
    assert render(r, [m("user", "Use tools")], bare) == (
        f"{LFM}<|im_start|>system\nList of tools: <|tool_list_start|>[{{\"name\": "
        "\"get_weather\", \"parameters\": {\"type\": \"object\", \"properties\": null}}]"
        "<|tool_list_end|><|im_end|>\n<|im_start|>user\nUse tools<|im_end|>\n"
        "<|im_start|>assistant\n")
    two = [Tool(function={"name": n, "parameters": {"type": "object"}})
           for n in ("tool_a", "tool_b")]
    assert render(r, [m("system", "Follow instructions."), m("user", "Do work")], two) == (
        f"{LFM}<|im_start|>system\nFollow instructions.\nList of tools: <|tool_list_start|>["
        "{\"name\": \"tool_a\", \"parameters\": {\"type\": \"object\", \"properties\": null}}, "
        "{\"name\": \"tool_b\", \"parameters\": {\"type\": \"object\", \"properties\": null}}]"
        "<|tool_list_end|><|im_end|>\n<|im_start|>user\nDo work<|im_end|>\n"
        "<|im_start|>assistant\n")
    paris = [call("get_weather", location="Paris")]
    assert render(r, [m("user", "Call a tool"), m("assistant", tool_calls=paris),
                      m("tool", "22C")]) == (
        f"{LFM}<|im_start|>user\nCall a tool<|im_end|>\n<|im_start|>assistant\n"
        "<|tool_call_start|>[get_weather(location=\"Paris\")]<|tool_call_end|><|im_end|>\n"
        "<|im_start|>tool\n<|tool_response_start|>22C<|tool_response_end|><|im_end|>\n"
        "<|im_start|>assistant\n")
    assert render(r, [m("user", "Call a tool"),
                      m("assistant", "Checking now.", tool_calls=paris)]) == (
        f"{LFM}<|im_start|>user\nCall a tool<|im_end|>\n<|im_start|>assistant\n"
        "<|tool_call_start|>[get_weather(location=\"Paris\")]<|tool_call_end|>\nChecking now.")
    tagged = [m("user", "Q1"), m("assistant", "<think>reason1</think>A1"), m("user", "Q2"),
              m("assistant", "<think>reason2</think>A2")]
    fielded = [m("user", "Q1"), m("assistant", "A1", thinking="reason1"), m("user", "Q2"),
               m("assistant", "A2", thinking="reason2")]
    stripped = (f"{LFM}<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
                "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n<think>reason2</think>A2")
    kept = (f"{LFM}<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n<think>reason1"
            "</think>A1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n"
            "<think>reason2</think>A2")
    assert render(rt, tagged, think=False) == stripped
    assert render(rt, tagged, think=True) == kept
    assert render(rt, fielded, think=True) == kept
    assert render(rt, fielded, think=False) == stripped
    assert render(rt, [m("user", "Weather?"),
                       m("assistant", thinking="Let me check the weather.", tool_calls=paris),
                       m("tool", "22C")], think=True) == (
        f"{LFM}<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\n<think>Let me "
        "check the weather.</think><|tool_call_start|>[get_weather(location=\"Paris\")]"
        "<|tool_call_end|><|im_end|>\n<|im_start|>tool\n<|tool_response_start|>22C"
        "<|tool_response_end|><|im_end|>\n<|im_start|>assistant\n")
    assert render(r, [m("user", "Hi"), m("assistant", "Hello", thinking="some reasoning")],
                  think=False) == (
        f"{LFM}<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello")
    assert render(r, [m("developer", "Do X"), m("user", "Hi")]) == (
        f"{LFM}<|im_start|>developer\nDo X<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert render(r, [m("user", "see", images=["aGk="])]).startswith(
        f"{LFM}<|im_start|>user\n<image>see")


OLMO31 = ("You are Olmo, a helpful AI assistant built by Ai2. Your date cutoff is December "
          "2024, and your model weights are available at https://huggingface.co/allenai.")


def test_olmo3_think_goldens() -> None:
    r = "olmo3-think"
    assert render(r, [m("user", "Hello!")]) == (
        f"<|im_start|>system\n{OLMO31}<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"
        "<|im_start|>assistant\n<think>")
    assert render(r, [m("system", "You are a helpful assistant."), m("user", "Hello!")]) == (
        "<|im_start|>system\nYou are a helpful assistant. You do not currently have access to "
        "any functions. <functions></functions><|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"
        "<|im_start|>assistant\n<think>")
    assert render(r, [m("user", "What is the weather?")],
                  [Tool(function={"name": "get_weather",
                                  "description": "Get the current weather"})]) == (
        f"<|im_start|>system\n{OLMO31}<|im_end|>\n<|im_start|>user\nWhat is the weather?"
        "<|im_end|>\n<|im_start|>assistant\n<think>")
    assert render(r, [m("user", "What is the weather in SF?"),
                      m("assistant", "Let me check the weather.",
                        tool_calls=[call("get_weather", location="San Francisco")]),
                      m("tool", '{"temperature": 68}')]) == (
        f"<|im_start|>system\n{OLMO31}<|im_end|>\n<|im_start|>user\nWhat is the weather in SF?"
        "<|im_end|>\n<|im_start|>assistant\nLet me check the weather.<|im_end|>\n"
        "<|im_start|>assistant\n<think>")
    assert render("olmo3-32b-think", [m("user", "Hello!")]).startswith(
        "<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n")
