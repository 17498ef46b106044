"""Which renderer/parser/template a model uses (inference/chat_format.py) and what the runner is
told because of it (no Jinja, preserved tokens): pure decisions, no processes."""

from __future__ import annotations

from pathlib import Path

from ollamapy.api.inference import Tool
from ollamapy.inference import chat_format as cf
from ollamapy.inference import parsers
from ollamapy.runner.flags import LaunchConfig, build_args
from ollamapy.template.gotemplate import parse
from tests.fake_runner import fake_model

HERMES_TMPL = ("{{ if .Tools }}<tools>{{ .Tools }}</tools>{{ end }}{{ range .Messages }}"
               "{{ if .ToolCalls }}<tool_call>\n{{ range .ToolCalls }}{\"name\": "
               "\"{{ .Function.Name }}\"}{{ end }}</tool_call>{{ end }}{{ .Content }}{{ end }}")
TOOLS = [Tool(function={"name": "f", "parameters": {"type": "object", "properties": {}}})]


def test_which_prompt_path() -> None:
    rend = fake_model("r:latest", "{{ .Prompt }}", config={"renderer": "qwen3-coder"})
    assert cf.ollama_renders(rend) and cf.go_template_source(rend) is None
    assert cf.family_renderer(rend, None) is not None
    go = fake_model("g:latest", "{{ .Prompt }}")
    assert cf.ollama_renders(go) and cf.go_template_source(go) == "{{ .Prompt }}"
    jinja = fake_model("j:latest", None)
    assert not cf.ollama_renders(jinja) and cf.go_template_source(jinja) is None
    preferred = fake_model("p:latest", "{{ .Prompt }}", prefer_jinja=True)
    assert not cf.ollama_renders(preferred) and cf.go_template_source(preferred) is None
    # a PARSER keeps Ollama rendering with the Go template even when Jinja could do more
    parsed = fake_model("q:latest", "{{ .Prompt }}", prefer_jinja=True,
                        config={"parser": "qwen3-coder"})
    assert cf.ollama_renders(parsed) and cf.go_template_source(parsed) == "{{ .Prompt }}"


def test_which_parser() -> None:
    harmony_tmpl = "<|start|>{{ .Prompt }}<|end|>"
    gptoss = fake_model("o:latest", harmony_tmpl, config={"model_family": "gptoss"})
    assert cf.parser_name(gptoss) == "harmony"
    assert type(cf.family_parser(gptoss, parse(harmony_tmpl), None)).__name__ == \
        "HarmonyParser"
    assert cf.parser_name(fake_model("l:latest", harmony_tmpl)) == ""
    go = fake_model("h:latest", HERMES_TMPL)
    p = cf.family_parser(go, parse(HERMES_TMPL), TOOLS)
    assert p is not None and p.has_tool_support()
    assert cf.preserved_tokens(p) == ["<tool_call>", "</tool_call>", "<think>", "</think>"]
    assert cf.family_parser(go, parse(HERMES_TMPL), None) is None  # no tools: generic path
    assert cf.harmony_think("max") == "high" and cf.harmony_think("low") == "low"


def test_preserved_tokens_per_family() -> None:
    ds = cf.preserved_tokens(parsers.get("deepseek3"))
    assert "<｜tool▁calls▁begin｜>" in ds and "<｜tool▁sep｜>" in ds
    assert '<|"|>' in cf.preserved_tokens(parsers.get("gemma4"))
    assert {"[TOOL_CALLS]", "[ARGS]"} <= set(cf.preserved_tokens(parsers.get("ministral")))
    assert "<|channel|>" in cf.preserved_tokens(parsers.get("harmony"))
    assert cf.preserved_tokens(parsers.get("llama3-json")) == ["<|python_tag|>"]
    assert cf.preserved_tokens(parsers.get("passthrough")) == []
    assert cf.preserved_tokens(None) == []


def test_special_token_of_a_tool_tag() -> None:
    """Ollama's llamaServerPreservedTokensForToolTag."""
    assert cf.special_token_of_tag("[TOOL_CALLS][") == "[TOOL_CALLS]"
    assert cf.special_token_of_tag("<tool_call>") == "<tool_call>"
    assert cf.special_token_of_tag("{") == "" and cf.special_token_of_tag("") == ""
    assert cf.special_token_of_tag("functools[") == "functools["


def test_leading_bos_of_renderers() -> None:
    assert cf.leading_bos(cf.family_renderer(
        fake_model("g:latest", None, config={"renderer": "gemma4"}), None)) == "<bos>"
    assert cf.leading_bos(None) == ""


def test_runner_without_jinja() -> None:
    on = build_args(LaunchConfig(model_path=Path("m"), num_ctx=512))
    off = build_args(LaunchConfig(model_path=Path("m"), num_ctx=512, jinja=False))
    assert "--jinja" in on and "--no-jinja" not in on
    assert "--jinja" not in off
    i = off.index("--no-jinja")
    assert off[i + 1:i + 3] == ["--chat-template", "chatml"]
