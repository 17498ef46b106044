"""Family RENDERER/PARSER models through the real server routes, with the scripted fake
llama-server: the prompt that reaches the runner is the family renderer's (Ollama's expected
prompts), the runner is asked to keep the parser's tags as text, and each family's real output
shapes come back as content, thinking and tool calls in the native, OpenAI and Anthropic APIs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import ClientSession

from ollamapy.inference import engine, parsers
from ollamapy.inference.capabilities import ModelFacts, capabilities
from ollamapy.store.model import Model
from tests.fake_runner import FakeRunner, FakeScheduler, FakeStore, fake_model, inference_app
from tests.unit.families.test_parsers import GOLDEN

HARMONY_TMPL = ("<|start|>system<|message|>You are ChatGPT.<|end|>{{ if .Tools }}<|start|>"
                "developer<|message|>{{ range .Tools }}{{ .Function.Name }}{{ end }}<|end|>"
                "{{ end }}{{- range .Messages }}"
                "<|start|>{{ .Role }}<|message|>{{ .Content }}<|end|>{{ end }}"
                "<|start|>assistant")
CODER_BASIC = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
               "<|im_start|>user\nHello, how are you?<|im_end|>\n<|im_start|>assistant\n")
WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "required": ["city"],
                   "properties": {"city": {"type": "string"}}}}}]
CODER_CALL = ["Let me check.\n<tool", "_call>\n<function=get_weather>\n<parameter=ci",
              "ty>\nParis\n</parameter>\n</function>\n</tool_call>"]


def family_model(name: str, *, renderer: str = "", parser: str = "",
                 template: str | None = "{{ .Prompt }}", model_family: str = "",
                 **kw: Any) -> Model:
    """A store entry as a pulled library model of the family looks, its capabilities derived
    the way the store derives them."""
    config = {k: v for k, v in (("renderer", renderer), ("parser", parser),
                                ("model_family", model_family)) if v}
    caps = tuple(capabilities(ModelFacts(go_template=template, renderer=renderer,
                                         parser=parser, model_family=model_family)))
    return fake_model(name, template, caps, config=config, **kw)


PARSER_CASES = [g for g in GOLDEN if g[1] in parsers.names()
                and g[1] not in ("hermes", "llama3-json", "mistral", "deepseek-tools")]


def models() -> dict[str, Model]:
    out = {
        "coder:latest": family_model("coder:latest", renderer="qwen3-coder",
                                     parser="qwen3-coder", model_family="qwen3moe"),
        "gemma4:latest": family_model("gemma4:latest", renderer="gemma4", parser="gemma4",
                                      digest="4" * 64),
        "gptoss:latest": family_model("gptoss:latest", template=HARMONY_TMPL,
                                      model_family="gptoss", digest="5" * 64),
        "jinja:latest": fake_model("jinja:latest", None, ("completion", "thinking"),
                                   digest="6" * 64),
    }
    for g in PARSER_CASES:
        name = f"p-{g[1]}:latest"
        out[name] = family_model(name, parser=g[1], digest="7" * 64)
    return out


@pytest.fixture
async def rig() -> AsyncIterator[tuple[str, FakeRunner]]:
    up = await FakeRunner().start()
    session = ClientSession()
    try:
        async with inference_app(FakeStore(models()),
                                 FakeScheduler(session, {"gen": up.url})) as url:
            yield url, up
    finally:
        await up.close()
        await session.close()


def run_parser(name: str, output: str, tools: Any, think: Any) -> list[Any]:
    p = parsers.get(name)
    assert p is not None
    p.init(tools, None, think)
    return [(type(e).__name__, getattr(e, "text", None) or getattr(e, "arguments", None))
            for e in p.feed(output) + p.finish()]


def chunks(text: str, n: int = 3) -> list[str]:
    return [text[i:i + n] for i in range(0, len(text), n)] or [""]


async def test_renderer_prompt_reaches_the_runner(rig: tuple[str, FakeRunner]) -> None:
    url, up = rig
    up.pieces = ["Fine."]
    msgs = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello, how are you?"}]
    async with httpx.AsyncClient() as h:
        dbg = (await h.post(url + "/api/chat", json={
            "model": "coder", "messages": msgs, "stream": False,
            "_debug_render_only": True})).json()
        assert dbg["_debug_info"]["rendered_template"] == CODER_BASIC
        r = (await h.post(url + "/api/chat", json={"model": "coder", "messages": msgs,
                                                   "stream": False})).json()
    assert r["message"]["content"] == "Fine."
    assert up.bodies[-1]["prompt"] == CODER_BASIC
    assert up.requests["/apply-template"] == 0  # ollamapy renders; llama-server's Jinja unused
    # the parser's tags must survive detokenisation: llama-server is asked to print them
    assert {"<tool_call>", "</tool_call>"} <= set(up.bodies[-1]["preserved_tokens"])


async def test_renderer_leading_bos_is_not_doubled(rig: tuple[str, FakeRunner]) -> None:
    url, up = rig
    up.pieces = ["ok"]
    req = {"model": "gemma4", "messages": [{"role": "user", "content": "Hello"}],
           "stream": False, "think": False}
    async with httpx.AsyncClient() as h:
        dbg = (await h.post(url + "/api/chat", json={**req, "_debug_render_only": True})).json()
        assert dbg["_debug_info"]["rendered_template"].startswith("<bos><|turn>user\nHello")
        await h.post(url + "/api/chat", json=req)
        assert up.bodies[-1]["prompt"].startswith("<|turn>user\nHello")  # runner adds BOS
        up.adds_bos = False
        engine._ADDS_BOS.clear()  # asked once per runner and model: make it ask again
        await h.post(url + "/api/chat", json=req)
    # a runner whose tokenizer adds no BOS gets the renderer's
    assert up.bodies[-1]["prompt"].startswith("<bos><|turn>user\nHello")


@pytest.mark.parametrize("case", PARSER_CASES, ids=[g[0] for g in PARSER_CASES])
async def test_family_output_through_native_chat(rig: tuple[str, FakeRunner],
                                                 case: Any) -> None:
    url, up = rig
    _src, name, tools, think, output, content, thinking, calls = case
    model = f"p-{name}"
    req: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "q"}]}
    if tools:
        req["tools"] = [t.model_dump(exclude_none=True) for t in tools]
    if think is None and family_model("x", parser=name).capabilities.count("thinking"):
        # the API cannot leave think unset for a thinking model (it defaults to on): the
        # case holds when the parser reads `true` as it reads unset
        think = True
        if run_parser(name, output, tools, True) != run_parser(name, output, tools, None):
            pytest.skip("this case needs think unset, which a thinking model never gets")
    if think is not None:
        req["think"] = think
    async with httpx.AsyncClient() as h:
        up.pieces = chunks(output)
        whole = (await h.post(url + "/api/chat", json={**req, "stream": False})).json()
        up.pieces = chunks(output, 1)
        lines = [json.loads(x) for x in
                 (await h.post(url + "/api/chat", json=req)).text.splitlines()]
    msg = whole["message"]
    assert msg["content"] == content
    assert msg.get("thinking", "") == thinking
    got = [(c["function"]["name"], c["function"]["arguments"], c["function"]["index"])
           for c in msg.get("tool_calls") or []]
    assert got == calls
    streamed = "".join(ln["message"].get("content", "") for ln in lines if "message" in ln)
    assert streamed == content
    assert sum(len(ln["message"].get("tool_calls") or []) for ln in lines
               if "message" in ln) == len(calls)
    assert lines[-1]["done"]


async def test_harmony_for_gpt_oss_templates(rig: tuple[str, FakeRunner]) -> None:
    url, up = rig
    up.pieces = chunks("<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant"
                       "<|channel|>commentary to=functions.get_weather <|constrain|>json"
                       "<|message|>{\"city\":\"Paris\"}<|call|>", 4)
    async with httpx.AsyncClient() as h:
        r = (await h.post(url + "/api/chat", json={
            "model": "gptoss", "stream": False, "tools": WEATHER, "think": "max",
            "messages": [{"role": "user", "content": "Weather?"}]})).json()
    msg = r["message"]
    assert msg["thinking"] == "Need weather."
    assert [c["function"]["name"] for c in msg["tool_calls"]] == ["get_weather"]
    assert msg["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert "<|channel|>" in up.bodies[-1]["preserved_tokens"]


async def test_tool_calls_in_openai_and_anthropic(rig: tuple[str, FakeRunner]) -> None:
    url, up = rig
    async with httpx.AsyncClient() as h:
        up.pieces = CODER_CALL
        oa = (await h.post(url + "/v1/chat/completions", json={
            "model": "coder", "tools": WEATHER,
            "messages": [{"role": "user", "content": "Weather in Paris?"}]})).json()
        choice = oa["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        assert choice["message"]["content"] == "Let me check."
        fn = choice["message"]["tool_calls"][0]["function"]
        assert fn["name"] == "get_weather" and json.loads(fn["arguments"]) == {"city": "Paris"}
        up.pieces = CODER_CALL
        an = (await h.post(url + "/v1/messages", json={
            "model": "coder", "max_tokens": 64,
            "tools": [{"name": "get_weather", "description": "Weather",
                       "input_schema": WEATHER[0]["function"]["parameters"]}],
            "messages": [{"role": "user", "content": "Weather in Paris?"}]})).json()
    assert an["stop_reason"] == "tool_use"
    uses = [b for b in an["content"] if b["type"] == "tool_use"]
    assert [(u["name"], u["input"]) for u in uses] == [("get_weather", {"city": "Paris"})]
    assert [b["text"] for b in an["content"] if b["type"] == "text"] == ["Let me check."]


async def test_jinja_think_levels_reach_the_template(rig: tuple[str, FakeRunner]) -> None:
    url, up = rig
    up.pieces = ["x"]
    msgs = [{"role": "user", "content": "Hi"}]
    async with httpx.AsyncClient() as h:
        for think in ("high", False):
            r = await h.post(url + "/api/chat", json={"model": "jinja", "messages": msgs,
                                                      "think": think, "stream": False})
            assert r.status_code == 200, r.text
    kwargs = [b.get("chat_template_kwargs") for b in up.applied]
    assert {"enable_thinking": True, "reasoning_effort": "high"} in kwargs
    assert {"enable_thinking": False} in kwargs


async def test_prompt_longer_than_the_context(rig: tuple[str, FakeRunner]) -> None:
    """Ollama: oldest non-system messages dropped; a single prompt still too long is cut in
    the middle with context shift on (the default), a 400 with Ollama's message with it off."""
    from ollamapy.runner.client import CONTEXT_ERROR

    up = await FakeRunner(pieces=["ok"]).start()
    session = ClientSession()
    tmpl = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
            "<|im_start|>assistant\n")
    store = FakeStore({"small:latest": fake_model("small:latest", tmpl)})
    try:
        async with inference_app(store, FakeScheduler(session, {"gen": up.url},
                                                      num_ctx={"gen": 45})) as url:
            history = [{"role": "system", "content": "rules"}] + [
                {"role": "user" if i % 2 == 0 else "assistant",
                 "content": f"m{i} " + "w " * 8} for i in range(6)]
            history.append({"role": "user", "content": "final question"})
            async with httpx.AsyncClient() as h:
                r = await h.post(url + "/api/chat", json={"model": "small", "stream": False,
                                                          "messages": history})
                assert r.status_code == 200, r.text
                prompt = up.bodies[-1]["prompt"]
                assert prompt.startswith("<|im_start|>system\nrules")
                assert "final question" in prompt and "m0 " not in prompt
                one = [{"role": "user", "content": "w " * 80}]
                r = await h.post(url + "/api/chat", json={"model": "small", "stream": False,
                                                          "messages": one, "shift": False})
                assert r.status_code == 400 and r.json() == {"error": CONTEXT_ERROR}
                n = len(up.bodies)
                r = await h.post(url + "/api/chat", json={"model": "small", "stream": False,
                                                          "messages": one})
                assert r.status_code == 200
                cut = up.bodies[-1]["prompt"]
                assert len(up.bodies) == n + 1 and isinstance(cut, list)
                assert len(cut) == 45 - (45 - 5) // 2  # num_keep 4 + BOS kept
    finally:
        await up.close()
        await session.close()


async def test_format_with_thinking_keeps_the_tool_format_parser() -> None:
    """A thinking Go-template model asked for `format` thinks freely first, then continues
    constrained (two requests); a tool call in the second part is still parsed by the
    template's tool format parser."""
    tmpl = ("{{ if .Tools }}<tools>{{ .Tools }}</tools>{{ end }}{{- range .Messages }}"
            "<|im_start|>{{ .Role }}\n{{ if .ToolCalls }}<tool_call>\n{{ range .ToolCalls }}"
            "{\"name\": \"{{ .Function.Name }}\"}{{ end }}</tool_call>{{ end }}{{ .Content }}"
            "<|im_end|>\n{{ end }}<|im_start|>assistant\n{{ if .Think }}<think>\n{{ end }}")
    up = await FakeRunner().start()
    up.scripts = [["plan", " more", "</think>", "dropped"],
                  ['<tool_call>\n{"name": "get_weather", ', '"arguments": {"city": "Oslo"}}',
                   "\n</tool_call>"]]
    session = ClientSession()
    store = FakeStore({"tt:latest": fake_model("tt:latest", tmpl,
                                               ("completion", "tools", "thinking"))})
    try:
        async with inference_app(store, FakeScheduler(session, {"gen": up.url})) as url:
            async with httpx.AsyncClient() as h:
                r = (await h.post(url + "/api/chat", json={
                    "model": "tt", "stream": False, "tools": WEATHER, "format": "json",
                    "messages": [{"role": "user", "content": "Weather?"}]})).json()
    finally:
        await up.close()
        await session.close()
    msg = r["message"]
    assert msg["thinking"] == "plan more"
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in msg["tool_calls"]] == [
        ("get_weather", {"city": "Oslo"})]
    assert len(up.bodies) == 2
    assert not {"json_schema", "grammar"} & set(up.bodies[0])  # free thinking first
    assert {"json_schema", "grammar"} & set(up.bodies[1])  # then constrained


async def test_family_renderer_runs_off_the_loop(rig: tuple[str, FakeRunner],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A family renderer is O(request) Python (a 12 MB chat: ~150 ms), so, like a Go template
    render, it runs in a worker thread, never on the event loop."""
    import threading

    from ollamapy.inference.renderers.qwen3coder import Qwen3CoderRenderer

    url, up = rig
    up.pieces = ["Fine."]
    real, threads = Qwen3CoderRenderer.render, []

    def spy(self, *a):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread())
        return real(self, *a)

    monkeypatch.setattr(Qwen3CoderRenderer, "render", spy)
    async with httpx.AsyncClient() as h:
        r = (await h.post(url + "/api/chat", json={
            "model": "coder", "stream": False,
            "messages": [{"role": "user", "content": "Hello, how are you?"}]})).json()
    assert r["message"]["content"] == "Fine."
    assert threads and threading.main_thread() not in threads
