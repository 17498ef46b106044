"""Go text/template subset: semantics checks and a corpus of real Ollama template shapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamapy.gofmt import format_float as go_float
from ollamapy.template.gotemplate import JsonList, TemplateError, parse, wrap_json

HERE = Path(__file__).parent / "templates"


def render(src: str, **data: object) -> str:
    # Ollama always passes Response; templates without it get {{ .Response }} appended.
    return parse(src).render({"Response": "", **data})


@pytest.mark.parametrize(("src", "data", "want"), [
    ("a {{- ` b` -}} c", {}, "a bc"),
    ("a  {{- /* comment */ -}}  b", {}, "ab"),
    ("{{ .Missing }}", {}, "<no value>"),
    ("{{ .A.B }}", {"A": {"B": 3}}, "3"),
    ("{{ if .X }}y{{ else if .Z }}z{{ else }}n{{ end }}", {"Z": 1}, "z"),
    ("{{ range $k, $v := .M }}{{ $k }}={{ $v }};{{ end }}", {"M": {"b": 2, "a": 1}}, "a=1;b=2;"),
    ("{{ range .L }}{{ . }}{{ else }}empty{{ end }}", {"L": []}, "empty"),
    ("{{ range $i, $x := .L }}{{ if eq $i 1 }}{{ continue }}{{ end }}{{ $x }}{{ end }}",
     {"L": ["a", "b", "c"]}, "ac"),
    ("{{ range .L }}{{ if eq . \"b\" }}{{ break }}{{ end }}{{ . }}{{ end }}",
     {"L": ["a", "b", "c"]}, "a"),
    ("{{ $x := 1 }}{{ range .L }}{{ $x = . }}{{ end }}{{ $x }}", {"L": [5, 6]}, "6"),
    ("{{ eq .R \"a\" \"b\" }} {{ ne 1 2 }} {{ lt 1 2 }} {{ ge \"b\" \"a\" }}", {"R": "b"},
     "true true true true"),
    ("{{ and 1 0 }} {{ or 0 \"x\" }} {{ not .E }}", {"E": ""}, "0 x true"),
    ("{{ len .L }} {{ index .L 1 }} {{ slice .L 1 }} {{ index .M \"k\" }}",
     {"L": [1, 2, 3], "M": {"k": "v"}}, "3 2 [2 3] v"),
    ("{{ printf \"%s-%d-%q-%v-%5.2f\" \"a\" 3 \"q\" true 1.5 }}", {}, 'a-3-"q"-true- 1.50'),
    ("{{ print 1 2 \"x\" 3 }}", {}, "1 2x3"),
    ("{{ .T | printf \"<%s>\" }}", {"T": "p"}, "<p>"),
    ("{{ with .W }}{{ .N }}{{ else }}none{{ end }}", {"W": {"N": "in"}}, "in"),
    ("{{ json .A }}", {"A": {"k": "<v>", "n": [1, 2.5]}}, '{"k":"\\u003cv\\u003e","n":[1,2.5]}'),
    ("{{ .L }} {{ .M }} {{ .F }} {{ .B }}", {"L": ["a", "b"], "M": {"z": 1, "a": 2}, "F": 2.0,
                                              "B": False}, "[a b] map[a:2 z:1] 2 false"),
    ("{{ (len .L) }}{{ $.X }}", {"L": [1], "X": "!"}, "1!"),
])
def test_semantics(src: str, data: dict, want: str) -> None:
    assert render(src, **data) == want


def test_json_objects_print_compact_and_fields_map_to_json_keys() -> None:
    tools = JsonList(wrap_json([{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "$defs": {"x": 1},
                                    "properties": {"b": {"type": "string"},
                                                   "a": {"type": ["x", "y"]}}}}}]))
    src = ("{{ .Tools }}|{{ range .Tools }}{{ .Function.Name }} {{ .Function.Parameters.Defs }}"
           "{{ range $k, $v := .Function.Parameters.Properties }} {{ $k }}:{{ $v.Type }}"
           "{{ end }}{{ end }}")
    out = render(src, Tools=tools)
    assert out == ('[{"type":"function","function":{"name":"f","parameters":{"type":"object",'
                   '"$defs":{"x":1},"properties":{"b":{"type":"string"},"a":{"type":["x","y"]}}}}}]'
                   '|f {"x":1} a:[x y] b:string')


@pytest.mark.parametrize("src", ["{{ if }}", "{{ .A ", "{{ end }}", "{{ if .A }}x",
                                 "{{ nofunc 1 }}", "{{ 1 2 }}", "{{ define \"x\" }}{{ end }}"])
def test_errors(src: str) -> None:
    with pytest.raises(TemplateError):
        parse(src).render({"A": 1})


def test_response_appended_when_template_lacks_it() -> None:
    t = parse("{{ .Prompt }}")
    assert t.render({"Prompt": "hi", "Response": "!"}) == "hi!"
    assert "response" in t.vars


def test_legacy_cut_at_response() -> None:
    t = parse((HERE / "llama3-legacy.gotmpl").read_text())
    cut = t.render({"System": "", "Prompt": "hi", "Response": ""}, t.until_response())
    assert cut == ("<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_go_float() -> None:
    assert [go_float(x) for x in (1.0, 0.5, 1e21, 1e-5, 123456.789, -2.0)] == [
        "1", "0.5", "1e+21", "1e-05", "123456.789", "-2"]


MSGS = [
    {"Role": "system", "Content": "You are a helpful assistant."},
    {"Role": "user", "Content": "Hello, how are you?"},
    {"Role": "assistant", "Content": "I'm doing great. How can I help you today?"},
    {"Role": "user", "Content": "I'd like to show off how chat templating works!"},
]

CHATML = """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""

GEMMA = """{{- range $index, $_ := .Messages }}
{{- if eq .Role "system" }}{{ continue }}{{ end }}<start_of_turn>
{{- if eq .Role "user" }}user
{{- if and $.System (eq $index 1) }}
{{ $.System }}
{{- end }}
{{- else if eq .Role "assistant" }}model
{{- end }}
{{ .Content }}<end_of_turn>
{{ end }}<start_of_turn>model
"""


def test_corpus_chatml() -> None:
    out = render(CHATML, System=MSGS[0]["Content"], Messages=MSGS)
    assert out == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                   "<|im_start|>user\nHello, how are you?<|im_end|>\n"
                   "<|im_start|>assistant\nI'm doing great. How can I help you today?<|im_end|>\n"
                   "<|im_start|>user\nI'd like to show off how chat templating works!<|im_end|>\n"
                   "<|im_start|>assistant\n")


def test_corpus_gemma() -> None:
    out = render(GEMMA, System=MSGS[0]["Content"], Messages=MSGS)
    assert out == ("<start_of_turn>user\nYou are a helpful assistant.\nHello, how are you?"
                   "<end_of_turn>\n<start_of_turn>model\nI'm doing great. How can I help you today?"
                   "<end_of_turn>\n<start_of_turn>user\nI'd like to show off how chat templating "
                   "works!<end_of_turn>\n<start_of_turn>model\n")


def test_corpus_mistral() -> None:
    t = parse((HERE / "mistral-instruct.gotmpl").read_text())
    out = t.render({"System": MSGS[0]["Content"], "Messages": MSGS[1:]})
    assert out == ("[INST] Hello, how are you?[/INST] I'm doing great. How can I help you today?"
                   "</s>[INST] You are a helpful assistant.\nI'd like to show off how chat "
                   "templating works![/INST]")


TOOLS = JsonList(wrap_json([{"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather <now>",
    "parameters": {"type": "object", "required": ["city"],
                   "properties": {"city": {"type": "string", "description": "City"}}}}}]))
TOOL_MSGS = [
    {"Role": "system", "Content": "Be brief."},
    {"Role": "user", "Content": "Weather in Paris?"},
    {"Role": "assistant", "Content": "", "ToolCalls": [wrap_json(
        {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}})]},
    {"Role": "tool", "Content": "22C", "ToolName": "get_weather"},
]


def test_corpus_qwen_tools() -> None:
    t = parse((HERE / "qwen2.5.gotmpl").read_text())
    out = t.render({"System": "Be brief.", "Messages": TOOL_MSGS, "Tools": TOOLS,
                    "Response": ""})
    assert out == (
        "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to assist"
        " with the user query.\n\nYou are provided with function signatures within <tools></tools>"
        ' XML tags:\n<tools>\n{"type": "function", "function": {"name":"get_weather",'
        '"description":"Get the weather \\u003cnow\\u003e","parameters":{"type":"object",'
        '"required":["city"],"properties":{"city":{"type":"string","description":"City"}}}}}\n'
        "</tools>\n\nFor each function call, return a json object with function name and "
        "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
        "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city":"Paris"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n22C\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n")


def test_corpus_qwen_fim() -> None:
    t = parse((HERE / "qwen2.5.gotmpl").read_text())
    out = t.render({"Prompt": "def f(", "Suffix": "return 1", "Response": ""})
    assert out == "<|fim_prefix|>def f(<|fim_suffix|>return 1<|fim_middle|>"


def test_corpus_llama31_tools() -> None:
    t = parse((HERE / "llama3.1.gotmpl").read_text())
    out = t.render({"System": "Be brief.", "Messages": TOOL_MSGS[:2], "Tools": TOOLS})
    assert out.startswith("<|start_header_id|>system<|end_header_id|>\n\nBe brief.\n\nCutting")
    assert ('{"type":"function","function":{"name":"get_weather"' in out)
    assert out.endswith("Weather in Paris?<|eot_id|><|start_header_id|>assistant"
                        "<|end_header_id|>\n\n")
    out2 = t.render({"System": "", "Messages": TOOL_MSGS[1:], "Tools": TOOLS})
    assert ('<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "get_weather", '
            '"parameters": {"city":"Paris"}}<|eot_id|><|start_header_id|>ipython'
            '<|end_header_id|>\n\n22C<|eot_id|><|start_header_id|>assistant<|end_header_id|>'
            '\n\n') in out2
