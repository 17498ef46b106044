"""Family fixtures through a real llama-server: a Gemma 3 270M copy carrying another Jinja chat
template loads, and `think` mapped to chat_template_kwargs reaches the template the way the
template reads it (llama-server's own /apply-template renders it)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ollamapy.inference.renderers.jinja_kwargs import chat_template_kwargs
from ollamapy.runner.process import RunnerProcess, child_env, free_port
from tests.families_fixture import EFFORT_JINJA, QWEN3_JINJA, copy_with_chat_template

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gemma(gemma_path: Path) -> Path:
    return gemma_path


async def _apply(runner: Path, model: Path, tmp: Path, bodies: list[dict[str, Any]]
                 ) -> list[str]:
    proc = await RunnerProcess.start(
        runner, ["--model", str(model), "-c", "512", "-np", "1", "--no-ui", "--offline",
                 "-t", "1", "--jinja"],
        port=free_port(), env=child_env(os.environ, tmp), name="families")
    out = []
    try:
        auth = {"Authorization": f"Bearer {proc.api_key}"}  # the runner is private
        async with aiohttp.ClientSession(headers=auth) as s:
            await proc.wait_ready(s, stall_timeout=120)
            for body in bodies:
                async with s.post(f"{proc.base_url}/apply-template", json=body) as r:
                    assert r.status == 200, await r.text()
                    out.append((await r.json())["prompt"])
    finally:
        await proc.stop()
    return out


MSGS = [{"role": "user", "content": "Hi"}]


async def test_enable_thinking_reaches_the_template(runner_binary: Path, gemma: Path,
                                                    tmp_path: Path) -> None:
    # a 250 MB copy: off the test's loop (the loop watchdog times it)
    model = await asyncio.to_thread(copy_with_chat_template, gemma, tmp_path / "qwen3.gguf",
                                    QWEN3_JINJA)
    bodies = [{"messages": MSGS, **({"chat_template_kwargs": kw} if kw else {})}
              for kw in (chat_template_kwargs(False), chat_template_kwargs(True),
                         chat_template_kwargs(None))]
    off, on, unset = await _apply(runner_binary, model, tmp_path, bodies)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert on.endswith("<|im_start|>assistant\n")
    # unset sends nothing (as Ollama does): llama-server's own default applies, which is
    # thinking off for a template its format detection does not know as a thinking format
    assert unset == off
    assert "<|im_start|>user\nHi<|im_end|>" in on


async def test_reasoning_effort_reaches_the_template(runner_binary: Path, gemma: Path,
                                                     tmp_path: Path) -> None:
    model = await asyncio.to_thread(copy_with_chat_template, gemma, tmp_path / "effort.gguf",
                                    EFFORT_JINJA)
    high, low = await _apply(runner_binary, model, tmp_path, [
        {"messages": MSGS, "chat_template_kwargs": chat_template_kwargs("high")},
        {"messages": MSGS, "chat_template_kwargs": chat_template_kwargs("low")}])
    assert high.startswith("<|start|>system<|message|>Reasoning: high<|end|>")
    assert low.startswith("<|start|>system<|message|>Reasoning: low<|end|>")
    assert high.endswith("<|start|>user<|message|>Hi<|end|><|start|>assistant")
