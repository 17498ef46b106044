"""Family models end to end: `ollamapy serve` with a store of Ollama-style family manifests (a
Gemma 3 270M GGUF under each family's RENDERER/PARSER/TEMPLATE), a real llama-server behind it.

- `_debug_render_only` prompts equal Ollama's expected prompts (the golden files of Ollama's
  renderer tests), through the real routes with the model loaded;
- a model rendered by its GGUF's Jinja template renders exactly what llama-server's own
  `/apply-template` renders, think levels included;
- a renderer model generates with `tools` (no capability 400), its runner was started without
  Jinja, and `/api/show` reports the RENDERER/PARSER.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from ollamapy.api.inference import Message, Tool
from ollamapy.inference import renderers
from ollamapy.inference.renderers.jinja_kwargs import chat_template_kwargs
from ollamapy.runner.process import RunnerProcess, child_env, free_port
from tests.conftest import FAST_PARAMS, ServerProc, start_server, stop_server
from tests.families_fixture import (
    FAMILIES,
    QWEN3_JINJA,
    Family,
    copy_with_chat_template,
    write_family_model,
)
from tests.unit.families import test_renderer_gemma4 as g4
from tests.unit.families import test_renderer_nemotron as nemo

pytestmark = pytest.mark.e2e

ENV = {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_CONTEXT_LENGTH": "4096"}


@pytest.fixture(scope="module")
def gemma(gemma_path: Path) -> Path:
    return gemma_path


@pytest.fixture(scope="module")
def jinja_gguf(gemma: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_with_chat_template(gemma, tmp_path_factory.mktemp("jinja") / "q.gguf",
                                   QWEN3_JINJA)


def fast(f: Family) -> Family:
    return dataclasses.replace(f, params={**f.params, **FAST_PARAMS})


@pytest.fixture(scope="module")
def fam_server(runner_binary: Path, gemma: Path, jinja_gguf: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    tmp = tmp_path_factory.mktemp("fam")
    models = tmp / "models"
    for name, key in (("fam/gemma4:test", "gemma4"), ("fam/qwen3-coder:test", "qwen3-coder"),
                      ("fam/nemotron:test", "nemotron-3-nano-r")):
        write_family_model(models, name, gemma, fast(FAMILIES[key]))
    write_family_model(models, "fam/jinja:test", jinja_gguf,
                       fast(Family(template=None, model_family="gemma3")))
    s = start_server(tmp, ENV)
    try:
        yield s
    finally:
        stop_server(s)


def wire(msgs: list[Message], tools: list[Tool] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [m.model_dump(exclude_none=True) for m in msgs]}
    if tools:
        body["tools"] = [t.model_dump(exclude_none=True) for t in tools]
    return body


def debug_render(s: ServerProc, model: str, body: dict[str, Any]) -> str:
    r = httpx.post(s.url + "/api/chat", json={"model": model, "stream": False,
                                              "_debug_render_only": True, **body}, timeout=300)
    assert r.status_code == 200, r.text
    return str(r.json()["_debug_info"]["rendered_template"])


def golden_cases(mod: Any, renderer: str, golden: dict[str, str]) -> list[tuple[str, Any]]:
    """(case, think to send) for the cases the API can ask for: `think` unset means thinking on
    for these thinking models, so an unset-think case is sent with the explicit value that
    renders the same prompt, if one does."""
    r = renderers.get(renderer)
    assert r is not None
    out = []
    for name, (msgs, tools, think) in sorted(mod.CASES.items()):
        if think is not None:
            out.append((name, think))
            continue
        same = [t for t in (True, False) if r.render(msgs, tools, t) == golden[name]]
        if same:
            out.append((name, same[0]))
    return out


GEMMA4 = golden_cases(g4, "gemma4", g4.GOLDEN)
NEMOTRON = golden_cases(nemo, "nemotron-3-nano", nemo.GOLDEN)


def test_enough_golden_cases_are_reachable() -> None:
    assert len(GEMMA4) >= 50 and len(NEMOTRON) >= 20, (len(GEMMA4), len(NEMOTRON))


@pytest.mark.parametrize(("case", "think"), GEMMA4)
def test_gemma4_prompts_match_ollama(fam_server: ServerProc, case: str, think: Any) -> None:
    msgs, tools, _ = g4.CASES[case]
    body = wire(msgs, tools)
    body["think"] = think
    assert debug_render(fam_server, "fam/gemma4:test", body) == g4.GOLDEN[case]


@pytest.mark.parametrize(("case", "think"), NEMOTRON)
def test_nemotron_prompts_match_ollama(fam_server: ServerProc, case: str, think: Any) -> None:
    msgs, tools, _ = nemo.CASES[case]
    body = wire(msgs, tools)
    body["think"] = think
    assert debug_render(fam_server, "fam/nemotron:test", body) == nemo.GOLDEN[case]


def test_qwen3_coder_prompt_matches_ollama(fam_server: ServerProc) -> None:
    got = debug_render(fam_server, "fam/qwen3-coder:test", {"messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello, how are you?"}]})
    assert got == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                   "<|im_start|>user\nHello, how are you?<|im_end|>\n<|im_start|>assistant\n")


async def test_jinja_prompt_is_llama_servers_own(fam_server: ServerProc, runner_binary: Path,
                                                 jinja_gguf: Path, tmp_path: Path) -> None:
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Why?"}]
    ours = {str(t): await asyncio.to_thread(  # a blocking HTTP call: off the test's loop
                debug_render, fam_server, "fam/jinja:test", {"messages": msgs, "think": t})
            for t in (True, False, "high")}
    proc = await RunnerProcess.start(
        runner_binary, ["--model", str(jinja_gguf), "-c", "512", "-np", "1", "--no-ui",
                        "--offline", "-t", "1", "--jinja"],
        port=free_port(), env=child_env(os.environ, tmp_path), name="families-ref")
    theirs = {}
    try:
        auth = {"Authorization": f"Bearer {proc.api_key}"}  # the runner is private
        async with aiohttp.ClientSession(headers=auth) as s:
            await proc.wait_ready(s, stall_timeout=120)
            for t in (True, False, "high"):
                async with s.post(f"{proc.base_url}/apply-template", json={
                        "messages": msgs, "chat_template_kwargs": chat_template_kwargs(t)}) as r:
                    assert r.status == 200, await r.text()
                    theirs[str(t)] = (await r.json())["prompt"]
    finally:
        await proc.stop()
    assert ours == theirs
    assert ours["False"].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_renderer_model_generates_with_tools(fam_server: ServerProc) -> None:
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    r = httpx.post(fam_server.url + "/api/chat", json={
        "model": "fam/qwen3-coder:test", "stream": False, "tools": tools,
        "options": {"num_predict": 8, "temperature": 0},
        "messages": [{"role": "user", "content": "Weather in Paris?"}]}, timeout=300)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["done"] and body["eval_count"] > 0
    log = fam_server.log()
    assert "--no-jinja --chat-template chatml" in log  # ollamapy renders: no Jinja parsing
    show = httpx.post(fam_server.url + "/api/show", json={"model": "fam/qwen3-coder:test"},
                      timeout=30).json()
    assert show["renderer"] == "qwen3-coder" and show["parser"] == "qwen3-coder"
    assert "tools" in show["capabilities"]
    assert "RENDERER qwen3-coder\nPARSER qwen3-coder\n" in show["modelfile"]


async def test_runner_takes_the_parsers_preserved_tokens(runner_binary: Path, gemma: Path,
                                                         tmp_path: Path) -> None:
    """The `preserved_tokens` field ollamapy sends reaches this llama-server build's sampler:
    a tag that is one special token of the vocabulary is kept (by id), others are ignored."""
    proc = await RunnerProcess.start(
        runner_binary, ["--model", str(gemma), "-c", "256", "-np", "1", "--no-ui", "--offline",
                        "-t", "1", "--no-jinja", "--chat-template", "chatml"],
        port=free_port(), env=child_env(os.environ, tmp_path), name="families-pt")
    try:
        auth = {"Authorization": f"Bearer {proc.api_key}"}  # the runner is private
        async with aiohttp.ClientSession(headers=auth) as s:
            await proc.wait_ready(s, stall_timeout=120)
            async with s.post(f"{proc.base_url}/tokenize", json={
                    "content": "<start_of_turn>", "parse_special": True}) as r:
                [special] = (await r.json())["tokens"]
            async with s.post(f"{proc.base_url}/completion", json={
                    "prompt": "Hi", "n_predict": 1, "temperature": 0,
                    "preserved_tokens": ["<start_of_turn>", "<tool_call>"]}) as r:
                assert r.status == 200, await r.text()
                body = await r.json()
    finally:
        await proc.stop()
    assert body["generation_settings"]["preserved_tokens"] == [special]
