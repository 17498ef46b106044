"""Capabilities, against the cases of Ollama's TestModelCapabilities (server/images_test.go at
ollama fb307609; compared as sets, as that test does) plus template-selection rules."""

from __future__ import annotations

import dataclasses

import pytest

from ollamapy.inference.capabilities import (
    ModelFacts,
    ProjectorFacts,
    capabilities,
    facts_from,
    uses_ollama_rendered_chat,
)

PROMPT = "{{ .prompt }}"
TOOLS = "{{ .prompt }}{{ if .tools }}{{ .tools }}{{ end }}"
TOOLS_INSERT = TOOLS + "{{ if .suffix }}{{ .suffix }}{{ end }}"
JINJA_TOOLS_THINK = ("{% if tools %}<tool_call>{{ tools }}</tool_call>{% endif %}<think>"
                     "{{ messages[0]['content'] }}</think>")
LLAMA = {"general.architecture": "llama"}
AUDIO_PROJ = {"general.architecture": "clip", "clip.has_audio_encoder": True,
              "vision.projector_type": "pixtral", "clip.vision.block_count": 1}
GEMMA4_PROJ = {**AUDIO_PROJ, "vision.projector_type": "gemma4v"}
NEMOTRON = {"general.architecture": "nemotron_h_omni", "nemotron_h_omni.vision.block_count": 1,
            "nemotron_h_omni.audio.block_count": 1}

CASES = [
    ("image generation via config", None, None, [], {"capabilities": ["image"]}, {"image"}),
    ("image and vision via config", None, None, [], {"capabilities": ["image", "vision"]},
     {"image", "vision"}),
    ("completion", LLAMA, PROMPT, [], {}, {"completion"}),
    ("completion, tools, insert", LLAMA, TOOLS_INSERT, [], {}, {"completion", "tools", "insert"}),
    ("tools", LLAMA, TOOLS, [], {}, {"completion", "tools"}),
    ("GGUF chat_template tools and thinking",
     {**LLAMA, "tokenizer.chat_template": JINJA_TOOLS_THINK}, None, [], {},
     {"completion", "tools", "thinking"}),
    ("Go TEMPLATE ignores GGUF chat_template",
     {**LLAMA, "tokenizer.chat_template": JINJA_TOOLS_THINK}, PROMPT, [], {}, {"completion"}),
    ("tools from config and parser", None, PROMPT, [],
     {"capabilities": ["completion", "tools"], "parser": "qwen3-coder"}, {"completion", "tools"}),
    ("vision", {**LLAMA, "llama.vision.block_count": 1}, PROMPT, [], {},
     {"completion", "vision"}),
    ("vision, tools, insert", {**LLAMA, "llama.vision.block_count": 1}, TOOLS_INSERT, [], {},
     {"completion", "vision", "tools", "insert"}),
    ("embedding", {"general.architecture": "bert", "bert.pooling_type": 1}, PROMPT, [], {},
     {"embedding"}),
    ("audio projector", LLAMA, PROMPT, [AUDIO_PROJ], {}, {"completion", "vision", "audio"}),
    ("gemma4 projector exposes audio", LLAMA, PROMPT, [GEMMA4_PROJ], {},
     {"completion", "vision", "audio"}),
    ("gemma4 gguf exposes audio", LLAMA, PROMPT, [AUDIO_PROJ],
     {"renderer": "gemma4-small", "capabilities": ["audio"]}, {"audio", "completion", "vision"}),
    ("nemotron3 gguf suppresses audio", NEMOTRON, PROMPT, [], {}, {"completion", "vision"}),
    ("nemotron3 projector suppresses audio", LLAMA, PROMPT, [AUDIO_PROJ],
     {"model_family": "nemotron_h_omni"}, {"completion", "vision"}),
    ("nemotron3 safetensors keeps thinking", None, PROMPT, [],
     {"model_format": "safetensors", "parser": "nemotron-3-nano", "renderer": "nemotron-3-nano",
      "capabilities": ["completion", "vision", "audio"]}, {"completion", "tools", "thinking"}),
    ("gemma4 safetensors suppresses vision and audio", None, PROMPT, [],
     {"model_format": "safetensors", "renderer": "gemma4-large",
      "capabilities": ["vision", "audio"]}, set()),
    # families whose Modelfile says TEMPLATE {{ .Prompt }} + RENDERER/PARSER
    ("harmony parser (gpt-oss)", {"general.architecture": "gptoss"}, "{{ .Prompt }}", [],
     {"renderer": "", "parser": "harmony"}, {"completion", "tools", "thinking"}),
    ("qwen3.5 parser", {"general.architecture": "qwen35"}, "{{ .Prompt }}", [],
     {"renderer": "qwen3.5", "parser": "qwen3.5"}, {"completion", "tools", "thinking"}),
    ("gpt-oss family adds thinking", {"general.architecture": "gptoss"},
     "<|start|>{{ .Prompt }}<|end|>", [], {"model_family": "gptoss"}, {"completion", "thinking"}),
    ("unparsable Go template: no template capabilities", LLAMA, "{{ if .Tools }", [], {},
     {"completion"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_capabilities(case: tuple) -> None:  # type: ignore[type-arg]
    _, kv, template, projs, config, want = case
    f = facts_from(kv, template, projs, config)
    if case[0] == "Go TEMPLATE ignores GGUF chat_template":  # Ollama's case sets no preference
        f = dataclasses.replace(f, prefer_chat=False)
    caps = capabilities(f)
    assert set(caps) == want
    assert len(caps) == len(set(caps))


def test_jinja_thinking_via_split_and_exclusions() -> None:
    split = "{{ content.split('</think>')[-1] }}"
    assert "thinking" in capabilities(ModelFacts(chat_template=split))
    assert "thinking" not in capabilities(ModelFacts(chat_template=split + "reasoning_content"))


def test_gguf_template_wins_when_it_does_more() -> None:
    jinja = ("{% for m in messages %}{% if m.role == 'tool' %}<tool_response>{% endif %}"
             "{{ m.tool_calls }}{% endfor %}{{ tools }}")
    f = ModelFacts(go_template=PROMPT, chat_template=jinja)
    assert not uses_ollama_rendered_chat(f)
    assert set(capabilities(f)) == {"completion", "tools"}
    env = ModelFacts(go_template=PROMPT, chat_template=jinja, go_template_env=True)
    assert uses_ollama_rendered_chat(env) and capabilities(env) == ["completion"]


def test_renderer_alone_means_ollama_renders() -> None:
    f = ModelFacts(renderer="qwen3-coder", chat_template=JINJA_TOOLS_THINK)
    assert uses_ollama_rendered_chat(f)
    assert capabilities(f) == ["completion"]


def test_projector_without_audio_and_gemma3n_suppression() -> None:
    f = ModelFacts(projectors=(ProjectorFacts(),))
    assert capabilities(f) == ["completion", "vision"]
    f = ModelFacts(projectors=(ProjectorFacts(has_audio=True, projector_type="gemma3nv"),))
    assert "audio" not in capabilities(f)


def test_gguf_template_preferred_at_load_when_go_template_does_less() -> None:
    f = facts_from({**LLAMA, "tokenizer.chat_template": JINJA_TOOLS_THINK}, PROMPT, [], {})
    assert set(capabilities(f)) == {"completion", "tools", "thinking"}
