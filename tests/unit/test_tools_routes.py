"""Tool calls and thinking end to end through /api/chat and /v1/chat/completions, with a scripted
fake llama-server (fixed model output) and a Go template (qwen-style) model: what the prompt
contains, and how the output is split into content / thinking / tool_calls."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import ClientSession

from ollamapy.store.model import Model
from tests.fake_runner import FakeRunner, FakeScheduler, FakeStore, fake_model, inference_app

HERE = Path(__file__).parent / "templates"
THINK_TMPL = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ if .Thinking }}<think>"
              "{{ .Thinking }}</think>{{ end }}{{ .Content }}<|im_end|>\n{{ end }}"
              "<|im_start|>assistant\n{{ if .Think }}<think>\n{{ end }}")
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "required": ["city"],
                   "properties": {"city": {"type": "string"}}}}}]


def model(name: str, template: str, caps: tuple[str, ...]) -> Model:
    return fake_model(name, template, caps)


@pytest.fixture
async def rig() -> AsyncIterator[tuple[str, FakeRunner]]:
    up = await FakeRunner().start()
    session = ClientSession()
    models = {"qwen:latest": model("qwen:latest", (HERE / "qwen2.5.gotmpl").read_text(),
                                   ("completion", "tools")),
              "thinker:latest": model("thinker:latest", THINK_TMPL,
                                      ("completion", "thinking")),
              "vision:latest": fake_model(
                  "vision:latest", THINK_TMPL.replace("{{ if .Think }}<think>\n{{ end }}", ""),
                  ("completion", "vision"), digest="1" * 64,
                  projector_paths=(Path("/nonexistent.mmproj"),))}
    try:
        async with inference_app(FakeStore(models),
                                 FakeScheduler(session, {"gen": up.url})) as url:
            yield url, up
    finally:
        await up.close()
        await session.close()


CALL = ['Let me check.', '<tool', '_call>\n{"name": "get_weather", ',
        '"arguments": {"city": "Paris"}}\n</tool_call>']


async def test_native_tool_calls(rig: tuple[str, FakeRunner]) -> None:
    url, up = rig
    up.pieces = CALL
    async with httpx.AsyncClient() as h:
        r = (await h.post(url + "/api/chat", json={
            "model": "qwen", "stream": False, "tools": TOOLS,
            "messages": [{"role": "user", "content": "Weather in Paris?"}]})).json()
        prompt = up.bodies[-1]["prompt"]
        assert '<tools>\n{"type": "function", "function": {"name":"get_weather"' in prompt
        assert prompt.endswith("<|im_start|>user\nWeather in Paris?<|im_end|>\n"
                               "<|im_start|>assistant\n")
        msg = r["message"]
        assert msg["content"] == "Let me check."
        assert [c["function"] for c in msg["tool_calls"]] == [
            {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}]
        assert msg["tool_calls"][0]["id"].startswith("call_")
        lines = [json.loads(ln) for ln in (await h.post(url + "/api/chat", json={
            "model": "qwen", "tools": TOOLS,
            "messages": [{"role": "user", "content": "Weather?"}]})).text.splitlines()]
        assert all("message" in ln for ln in lines) and lines[-1]["done"]
        assert sum(len(ln["message"].get("tool_calls", [])) for ln in lines) == 1
        # tools on a model whose template has none -> Ollama's capability error
        e = await h.post(url + "/api/chat", json={"model": "thinker", "tools": TOOLS,
                                                 "messages": [{"role": "user",
                                                               "content": "x"}]})
        assert e.status_code == 400
        assert e.json() == {"error": "registry.ollama.ai/library/thinker:latest does not "
                                     "support tools"}


async def test_openai_tool_calls(rig: tuple[str, FakeRunner]) -> None:
    url, up = rig
    up.pieces = CALL
    async with httpx.AsyncClient() as h:
        r = (await h.post(url + "/v1/chat/completions", json={
            "model": "qwen", "tools": TOOLS,
            "messages": [{"role": "user", "content": "Weather in Paris?"}]})).json()
        choice = r["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        call = choice["message"]["tool_calls"][0]
        assert call["type"] == "function" and call["function"]["name"] == "get_weather"
        assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
        # a tool result round trip renders as <tool_response> in the prompt
        await h.post(url + "/v1/chat/completions", json={
            "model": "qwen", "tools": TOOLS, "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call["id"], "content": "22C"}]})
        prompt = up.bodies[-1]["prompt"]
        assert ('<tool_call>\n{"name": "get_weather", "arguments": {"city":"Paris"}}\n'
                '</tool_call><|im_end|>') in prompt
        assert "<tool_response>\n22C\n</tool_response>" in prompt


async def test_thinking_split(rig: tuple[str, FakeRunner]) -> None:
    url, up = rig
    up.pieces = ["I should ", "greet.\n</think>\n\n", "Hello!"]
    async with httpx.AsyncClient() as h:
        r = (await h.post(url + "/api/chat", json={
            "model": "thinker", "stream": False,
            "messages": [{"role": "user", "content": "hi"}]})).json()
        # thinking models think by default; the prompt ends inside <think>
        assert up.bodies[-1]["prompt"].endswith("<|im_start|>assistant\n<think>\n")
        assert r["message"]["thinking"] == "I should greet."
        assert r["message"]["content"] == "Hello!"
        g = (await h.post(url + "/api/generate", json={
            "model": "thinker", "prompt": "hi", "stream": False})).json()
        assert g["thinking"] == "I should greet." and g["response"] == "Hello!"
        o = (await h.post(url + "/v1/chat/completions", json={
            "model": "thinker", "messages": [{"role": "user", "content": "hi"}]})).json()
        assert o["choices"][0]["message"]["reasoning"] == "I should greet."
        # think:false renders without the opening tag and passes text through
        up.pieces = ["Plain."]
        r = (await h.post(url + "/api/chat", json={
            "model": "thinker", "stream": False, "think": False,
            "messages": [{"role": "user", "content": "hi"}]})).json()
        assert up.bodies[-1]["prompt"].endswith("<|im_start|>assistant\n")
        assert r["message"] == {"role": "assistant", "content": "Plain."}


async def test_errors_before_and_after_first_byte(rig: tuple[str, FakeRunner]) -> None:
    url, up = rig
    async with httpx.AsyncClient() as h:
        up.mode = "error_mid"
        r = await h.post(url + "/api/generate", json={"model": "qwen", "prompt": "x"})
        lines = [json.loads(ln) for ln in r.text.splitlines()]
        assert r.status_code == 200 and lines[0]["response"] == "a"
        assert lines[-1] == {"error": "boom"}
        up.mode = "error_first"
        r = await h.post(url + "/api/generate", json={"model": "qwen", "prompt": "x"})
        assert r.status_code == 400 and "context length" in r.json()["error"]
        r = await h.post(url + "/v1/chat/completions", json={
            "model": "qwen", "stream": True, "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 400
        assert r.json()["error"]["type"] == "invalid_request_error"


def _png(side: int) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (side, side)).save(out, format="PNG")
    return out.getvalue()


async def test_images(rig: tuple[str, FakeRunner]) -> None:
    url, up = rig
    up.pieces = ["A cat."]
    # real PNGs: undecodable image data is a 400 now (PNG/JPEG reach the runner unchanged)
    img1, img2 = (base64.b64encode(_png(n)).decode() for n in (2, 3))
    async with httpx.AsyncClient() as h:
        r = (await h.post(url + "/api/chat", json={
            "model": "vision", "stream": False, "messages": [
                {"role": "user", "content": "What is in [img] and this?",
                 "images": [img1, img2]}]})).json()
        assert r["message"]["content"] == "A cat."
        prompt = up.bodies[-1]["prompt"]
        assert prompt["multimodal_data"] == [img1, img2]
        assert prompt["prompt_string"].count("<__media__>") == 2
        assert "<__media__>What is in <__media__> and this?" in prompt["prompt_string"]
        e = await h.post(url + "/api/generate", json={"model": "qwen", "prompt": "x",
                                                     "images": [img1]})
        assert e.status_code == 400 and "image" in e.json()["error"]
        e = await h.post(url + "/api/generate", json={"model": "vision", "prompt": "x",
                                                     "images": ["not base64!"]})
        assert e.status_code == 400


async def test_request_template_override(rig: tuple[str, FakeRunner]) -> None:
    url, up = rig
    up.pieces = ["ok"]
    async with httpx.AsyncClient() as h:
        r = await h.post(url + "/api/generate", json={
            "model": "qwen", "prompt": "hi", "system": "S", "stream": False,
            "template": "[{{ .System }}|{{ .Prompt }}]"})
        assert r.status_code == 200 and up.bodies[-1]["prompt"] == "[S|hi]"
        bad = await h.post(url + "/api/generate", json={
            "model": "qwen", "prompt": "hi", "template": "{{ if .X }}"})
        assert bad.status_code == 500 and bad.json()["error"].startswith("template error")


async def test_format_with_thinking_is_two_pass(rig: tuple[str, FakeRunner]) -> None:
    """Thinking is generated unconstrained; the format applies from the end of thinking on."""
    url, up = rig
    up.scripts = [["I think.", "\n</think>\n\n", "free text"], ['{"a": 1}']]
    async with httpx.AsyncClient() as h:
        r = (await h.post(url + "/api/chat", json={
            "model": "thinker", "stream": False, "format": "json",
            "messages": [{"role": "user", "content": "hi"}]})).json()
    first, second = up.bodies[-2], up.bodies[-1]
    assert "json_schema" not in first and second["json_schema"] == {"type": "object"}
    assert second["prompt"] == first["prompt"] + "I think.</think>\n\n"
    assert r["message"]["thinking"] == "I think."
    assert r["message"]["content"] == '{"a": 1}'


async def test_client_headers_never_reach_llama_server(rig: tuple[str, FakeRunner]) -> None:
    """X-Conversation-Id would turn off llama-server's cancel-on-disconnect; nothing the client
    sends as a header (auth included) is passed upstream."""
    url, up = rig
    up.pieces = ["ok"]
    sent = {"X-Conversation-Id": "conv-1", "Authorization": "Bearer secret-key",
            "X-Custom": "1"}
    async with httpx.AsyncClient(headers=sent) as h:
        for path, body in (("/api/chat", {"messages": [{"role": "user", "content": "hi"}]}),
                           ("/api/generate", {"prompt": "hi"}),
                           ("/v1/chat/completions",
                            {"messages": [{"role": "user", "content": "hi"}]})):
            r = await h.post(url + path, json={"model": "qwen", "stream": False, **body})
            assert r.status_code == 200, r.text
            got = up.headers[-1]
            assert not {"x-conversation-id", "authorization", "x-custom"} & set(got), got


async def test_a_large_request_template_is_parsed_off_the_loop(
        rig: tuple[str, FakeRunner]) -> None:
    """A request's own `template` is the client's size: a 900 KB string literal takes the parser
    about half a second, which must not be spent on the event loop (the watchdog fails it)."""
    url, up = rig
    up.pieces = ["ok"]
    big = "y" * 900_000  # the test app's body cap is 1 MiB
    async with httpx.AsyncClient(timeout=120) as h:
        r = await h.post(url + "/api/generate", json={
            "model": "thinker", "stream": False, "prompt": "hi",
            "template": '{{ "' + big + '" }}{{ .Prompt }}'})
    assert r.status_code == 200, r.text
    assert r.json()["response"] == "ok"
    assert up.bodies[-1]["prompt"] == big + "hi"
