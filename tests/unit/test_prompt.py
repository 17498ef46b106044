"""Prompt rendering and fitting with a fake tokenizer (1 token per word)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ollamapy.api.inference import Message, Tool
from ollamapy.api.openai import ChatCompletionRequest, to_chat
from ollamapy.errors import BadRequest
from ollamapy.inference.prompt import (
    Prompt,
    Renderer,
    collate,
    compile_template,
    context_shift_cut,
    context_shift_limit,
    fit_messages,
    go_tool,
    render_go,
    shift_fit,
    strip_old_thinking,
    strip_think_blocks,
    tag_images,
)
from ollamapy.runner.client import CONTEXT_ERROR

HERE = Path(__file__).parent / "templates"
CHATML = compile_template("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}"
                          "<|im_end|>\n{{ end }}<|im_start|>assistant\n")


def renderer(template: Any = CHATML) -> tuple[Renderer, list[str]]:
    calls: list[str] = []

    async def tok(text: str, add_special: bool) -> list[int]:
        calls.append(text)
        return list(range(len(text.split()) + (1 if add_special else 0)))

    async def apply(msgs: list[dict[str, Any]], tools: Any, think: Any) -> str:
        return "".join(f"[{m['role']}]{m['content']}" for m in msgs) + "[assistant]"

    return Renderer(template, tok, apply), calls


def msg(role: str, content: str, **kw: Any) -> Message:
    return Message(role=role, content=content, **kw)


def test_collate_merges_same_role_but_not_tools() -> None:
    system, out = collate([msg("system", "a"), msg("system", "b"), msg("user", "x"),
                           msg("user", "y"), msg("tool", "1"), msg("tool", "2")])
    assert system == "a\n\nb"
    assert [(m["Role"], m["Content"]) for m in out] == [
        ("system", "a\n\nb"), ("user", "x\n\ny"), ("tool", "1"), ("tool", "2")]


def test_legacy_template_per_turn() -> None:
    t = compile_template((HERE / "llama3-legacy.gotmpl").read_text())
    out = render_go(t, [msg("system", "S"), msg("user", "u1"), msg("assistant", "a1"),
                        msg("user", "u2")], None, None)
    assert out == (
        "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user"
        "<|end_header_id|>\n\nu1<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\na1"
        "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nu2<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_go_tool_field_order() -> None:
    t = Tool.model_validate({"type": "function", "function": {
        "name": "f", "parameters": {"properties": {"b": {}, "a": {}}, "required": ["a"],
                                    "type": "object"}}})
    assert list(go_tool(t)["function"]["parameters"]) == ["type", "required", "properties"]
    assert list(go_tool(t)["function"]["parameters"]["properties"]) == ["b", "a"]


async def test_short_prompt_needs_no_tokenize() -> None:
    r, calls = renderer()
    p = await fit_messages(r, [msg("user", "hi")], None, None, 2048, True)
    assert p.text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n" and calls == []


async def test_truncation_keeps_system_and_last() -> None:
    r, _ = renderer()
    msgs = [msg("system", "rules")] + [msg("user" if i % 2 == 0 else "assistant",
                                           f"m{i} " + "w " * 20) for i in range(6)]
    msgs.append(msg("user", "final question"))
    p = await fit_messages(r, msgs, None, None, 60, True)
    assert p.text.startswith("<|im_start|>system\nrules")
    assert "final question" in p.text and "m0 " not in p.text and "m5 " in p.text
    full = await fit_messages(r, msgs, None, None, 60, False)  # truncate off: everything
    assert "m0 " in full.text


@pytest.mark.parametrize("template", [CHATML, None])
async def test_truncation_bisects_to_ollamas_cut(template: Any) -> None:
    """The kept suffix is the one Ollama's walk (newest to oldest, stop at the first that
    does not fit) keeps, for every context size; found in log2(n) renders and tokenizes
    instead of one per kept message (a GGUF-template model with 1,000 short messages took
    55 s: each step is an /apply-template and a /tokenize round trip). Systems are kept."""
    import asyncio
    import math

    n = 200
    msgs = [msg("system", "rules")] + [
        msg("user" if i % 2 == 0 else "assistant", f"m{i} " + "w " * (i % 7)) for i in range(n)]
    msgs.append(msg("user", "final question"))
    r0, _ = renderer(template)
    sizes = {}  # start -> words of the rendered suffix (what the fake tokenizer counts)
    for i in range(1, len(msgs)):
        sub = [m for m in msgs[:i] if m.role == "system"] + msgs[i:]
        text = (render_go(r0.template, sub, None, None) if r0.template is not None
                else await r0.apply_template([m.model_dump() for m in sub], None, None))
        sizes[i] = len(text.split())
        await asyncio.sleep(0)  # a long synchronous stretch trips the loop watchdog
    for num_ctx in (10, 50, 333, 700, 1000):
        walk = len(msgs) - 1  # Ollama's walk, spelled out
        for i in range(len(msgs) - 2, 0, -1):
            if sizes[i] > num_ctx:
                break
            walk = i
        r, calls = renderer(template)
        p = await fit_messages(r, msgs, None, None, num_ctx, True)
        assert p.text.startswith(("<|im_start|>system\nrules", "[system]rules"))
        kept = [int(w[1:]) for w in p.text.replace("\n", " ").replace("]", " ").split()
                if w[:1] == "m" and w[1:].isdigit()]
        assert kept == list(range(walk - 1, n)), (num_ctx, walk, kept[:3])
        assert len(calls) <= 1 + math.ceil(math.log2(len(msgs))), (num_ctx, len(calls))


async def test_jinja_path_uses_apply_template() -> None:
    r, _ = renderer(None)
    p = await fit_messages(r, [msg("system", "s"), msg("user", "u")], None, None, 2048, True)
    assert p.text == "[system]s[user]u[assistant]"


async def test_shift_fit() -> None:
    r, _ = renderer()
    text = " ".join(f"t{i}" for i in range(300))
    cut = await shift_fit(r, Prompt(text), 100, 4, True, True)
    assert cut.tokens is not None and len(cut.tokens) == 100 - (100 - 5) // 2
    assert cut.tokens[:5] == [0, 1, 2, 3, 4] and cut.tokens[-1] == 300
    with pytest.raises(BadRequest, match="longer than the context length"):
        await shift_fit(r, Prompt(text), 100, 4, True, False)
    same = await shift_fit(r, Prompt(text), 100, 4, False, True)
    assert same.tokens is None


# Ollama's TestContextShiftPromptLimit cases (llm/llama_server_test.go)
@pytest.mark.parametrize(("num_ctx", "num_keep", "want"), [
    (8, 3, 6), (4096, 4, 2050), (4096, 5, 2051), (8, 99, 7), (8, -1, 4), (1, 0, 0)])
def test_context_shift_limit(num_ctx: int, num_keep: int, want: int) -> None:
    assert context_shift_limit(num_ctx, num_keep) == want


def test_context_shift_cut_keeps_head_and_tail() -> None:
    toks = list(range(20))
    assert context_shift_cut(toks, 8, 3, adds_bos=False) == [0, 1, 2, 17, 18, 19]
    assert context_shift_cut(toks, 8, 3, adds_bos=True) == [0, 1, 2, 3, 18, 19]  # + BOS
    assert context_shift_cut(toks, 8, -1, adds_bos=False) == list(range(7))  # keep all
    long = list(range(5000))
    cut = context_shift_cut(long, 4096, 4, True)  # issue 16618: BOS + 4 kept, 2051 in all
    assert len(cut) == 2051 and cut[:6] == [0, 1, 2, 3, 4, 5000 - 2046] and cut[-1] == 4999


async def test_prompt_that_fits_exactly_is_sent_whole() -> None:
    """num_ctx - 1 tokens fit (the runner needs one slot to generate), as in Ollama."""
    r, _ = renderer()
    text = " ".join(f"t{i}" for i in range(6))  # 6 words + BOS = 7 tokens
    assert (await shift_fit(r, Prompt(text), 8, 3, True, False)).tokens is None
    with pytest.raises(BadRequest) as e:  # one more: refused, never cut, with shift off
        await shift_fit(r, Prompt(text + " t6"), 8, 3, True, False)
    assert e.value.status == 400 and e.value.message == CONTEXT_ERROR


def test_deepseek2_is_not_context_shifted() -> None:
    from ollamapy.inference.plan import supports_context_shift
    from tests.fake_runner import fake_model

    assert supports_context_shift(fake_model("a:latest"))
    assert not supports_context_shift(fake_model("d:latest", config={"model_family":
                                                                     "deepseek2"}))
    assert not supports_context_shift(fake_model("d:latest", config={
        "model_family": "x", "model_families": ["x", "deepseek2"]}))


def test_images_tagged() -> None:
    tagged, images = tag_images([msg("user", "a [img] b", images=["QQ=="]),
                                 msg("user", "c", images=["Qg==", "Qw=="])])
    assert [m.content for m in tagged] == ["a [img-0] b", "[img-1][img-2]c"]
    assert images == ["QQ==", "Qg==", "Qw=="]


def test_strip_old_thinking() -> None:
    msgs = [msg("user", "q"), msg("assistant", "<think>x</think>A"), msg("user", "q2")]
    assert strip_old_thinking(msgs, "qwen3")[1].content == "A"
    assert strip_old_thinking(msgs, "llama")[1].content == "<think>x</think>A"


@pytest.mark.parametrize("text", [
    "", "plain", "<think>x</think>A", "a<think>x</think>b<think>y</think>c",
    "<think>unclosed", "</think>x<think>y", "<think><think>x</think>y</think>z",
    "<think>a\nb</think>\n", "<think></think>", "x<think>y</think",
])
def test_strip_think_blocks_matches_the_regex(text: str) -> None:
    import re

    assert strip_think_blocks(text) == re.sub(r"<think>.*?</think>", "", text, flags=re.S)


def test_strip_old_thinking_is_linear_on_a_megabyte_of_open_tags() -> None:
    """A client-sent assistant turn of 1 MB of `<think>` (no close tag) made the regex rescan
    to the end from every tag: minutes on the event loop. The linear scan is done at once;
    the bound below is a liveness limit, not a timing measurement."""
    import threading

    content = "<think>" * (1024 * 1024 // 7)
    msgs = [msg("user", "q"), msg("assistant", content), msg("user", "q2")]
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(
        strip_old_thinking(msgs, "qwen3")[1].content), daemon=True)
    t.start()
    t.join(30)
    assert out == [content], "strip_old_thinking did not finish within 30 s on 1 MB"


@pytest.mark.parametrize("wrapper", [None, "x", 5, True, [5], [{}], {"schema": "x"}, {}])
def test_openai_json_schema_that_is_not_an_object_is_400(wrapper: Any) -> None:
    """`response_format.json_schema` of any other JSON kind is a 400 with the same words as a
    missing one (it was an AttributeError: a 500 and a traceback)."""
    rf: dict[str, Any] = {"type": "json_schema"}
    if wrapper is not None:
        rf["json_schema"] = wrapper
    req = ChatCompletionRequest.model_validate({
        "model": "m", "messages": [{"role": "user", "content": "hi"}], "response_format": rf})
    with pytest.raises(BadRequest, match=r"json_schema\.schema must be an object"):
        to_chat(req)


def test_openai_translation() -> None:
    req = ChatCompletionRequest.model_validate({
        "model": "m", "max_tokens": 5, "stop": "x", "reasoning_effort": "minimal",
        "response_format": {"type": "json_object"},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                                         {"type": "image_url",
                                          "image_url": {"url": "data:image/png;base64,QQ=="}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}]})
    chat = to_chat(req)
    assert chat.options == {"temperature": 1.0, "top_p": 1.0, "num_predict": 5, "stop": ["x"]}
    assert chat.format == "json" and chat.think == "low"
    assert [m.content for m in chat.messages] == ["hi", "", "", "42"]
    assert chat.messages[1].images == ["QQ=="]
    assert chat.messages[2].tool_calls[0].function.arguments == {"a": 1}
    assert chat.messages[3].tool_name == "f"
    bad = ChatCompletionRequest.model_validate({"model": "m", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": "https://x/y.png"}]}]})
    with pytest.raises(BadRequest, match="image URLs are not currently supported"):
        to_chat(bad)


async def test_jinja_skeleton_reuse() -> None:
    """Opaque-content Jinja templates are rendered once per conversation shape; the result is
    identical to a real render; templates that touch content always go to the runner."""
    calls: list[list[dict[str, Any]]] = []

    async def apply(msgs: list[dict[str, Any]], tools: Any, think: Any) -> str:
        calls.append(msgs)
        return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in msgs) + "<a>"

    async def tok(text: str, add_special: bool) -> list[int]:
        return []

    opaque = "{{ message['content'] }}"
    r = Renderer(None, tok, apply, jinja_source=opaque, skeleton_key="u1|d1")
    a = await fit_messages(r, [msg("system", "S"), msg("user", "one")], None, None, 4096, True)
    b = await fit_messages(r, [msg("system", "T"), msg("user", "two\n")], None, None, 4096,
                           True)
    assert a.text == "<system>S</system><user>one</user><a>"
    assert b.text == "<system>T</system><user>two\n</user><a>"
    assert len(calls) == 1
    r2 = Renderer(None, tok, apply, jinja_source="{{ message.content | trim }}",
                  skeleton_key="u1|d1")
    await fit_messages(r2, [msg("user", "x")], None, None, 4096, True)
    await fit_messages(r2, [msg("user", "y")], None, None, 4096, True)
    assert [c[0]["content"] for c in calls[1:]] == ["x", "y"]

    async def trimming(msgs: list[dict[str, Any]], tools: Any, think: Any) -> str:
        calls.append(msgs)
        return "".join(m["content"].strip() for m in msgs)

    r3 = Renderer(None, tok, trimming, jinja_source=opaque, skeleton_key="u2|d2")
    out = await fit_messages(r3, [msg("user", " z ")], None, None, 4096, True)
    assert out.text == "z"  # placeholders were not found verbatim: real render used
