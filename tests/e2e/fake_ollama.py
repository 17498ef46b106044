"""A scripted Ollama API server (aiohttp in a thread) for driving `ollamapy run` through cases a
135M model cannot produce on demand: thinking output, a pull with progress, an answer slow enough
to interrupt with Ctrl+C. It records every request body so tests can assert what the CLI sent."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DIGEST = "sha256:" + "5a" * 32
METRICS = {"total_duration": 1_234_567_891, "load_duration": 12_345_000,
           "prompt_eval_count": 26, "prompt_eval_duration": 130_000_000,
           "eval_count": 282, "eval_duration": 4_535_000_000}


@dataclass
class FakeState:
    models: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "smollm2:135m": {"capabilities": ["completion"], "parameters": 'stop "<|im_end|>"',
                         "template": "{{ .Prompt }}", "system": "", "license": "Apache 2.0",
                         "details": {"family": "llama", "parameter_size": "134.52M",
                                     "quantization_level": "Q4_1"},
                         "model_info": {"general.architecture": "llama",
                                        "llama.context_length": 8192}},
        "thinker:1b": {"capabilities": ["completion", "thinking"]},
    })
    pullable: set[str] = field(default_factory=lambda: {"pullme:1b"})
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [b for p, b in self.requests if p == path]


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj) + "\n").encode()


def make_app(state: FakeState) -> web.Application:
    async def body(request: web.Request) -> dict[str, Any]:
        data = await request.json() if request.can_read_body else {}
        state.requests.append((request.path, data))
        return data

    def known(name: str) -> dict[str, Any] | None:
        return state.models.get(name if ":" in name else f"{name}:latest")

    async def stream(request: web.Request, chunks: list[dict[str, Any]],
                     delay: float = 0.0) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        try:
            for c in chunks:
                await resp.write(_line(c))
                if delay:
                    await asyncio.sleep(delay)
        except ConnectionResetError:  # the CLI closed the stream (Ctrl+C)
            state.cancelled.set()
        except asyncio.CancelledError:
            state.cancelled.set()
            raise
        return resp

    async def root(_: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"version": "9.9.9"})

    async def show(request: web.Request) -> web.Response:
        data = await body(request)
        m = known(data.get("model", ""))
        if m is None:
            return web.json_response({"error": f"model '{data.get('model')}' not found"},
                                     status=404)
        return web.json_response({"modelfile": "FROM x", "model_info": {}, **m})

    async def pull(request: web.Request) -> web.StreamResponse:
        data = await body(request)
        name = data.get("model", "")
        if name not in state.pullable:
            return await stream(request, [{"status": "pulling manifest"},
                                          {"error": "pull model manifest: file does not exist"}])
        state.models[name] = {"capabilities": ["completion"]}
        chunks: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        chunks += [{"status": f"pulling {DIGEST[7:19]}", "digest": DIGEST, "total": 1000,
                    "completed": c} for c in (0, 400, 1000)]
        chunks += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"},
                   {"status": "success"}]
        return await stream(request, chunks, delay=0.02)

    async def generate(request: web.Request) -> web.StreamResponse:
        data = await body(request)
        m = known(data.get("model", ""))
        if m is None:
            return web.json_response({"error": f"model '{data.get('model')}' not found"},
                                     status=404)
        if data.get("think") and "thinking" not in m["capabilities"]:
            return web.json_response(
                {"error": f"\"{data['model']}\" does not support thinking"}, status=400)
        base = {"model": data["model"], "created_at": "2026-01-01T00:00:00Z"}
        if not data.get("prompt"):
            return web.json_response({**base, "response": "", "done": True,
                                      "done_reason": "load"})
        words = f"You asked: {data['prompt'].strip()}".split(" ")
        chunks = [{**base, "response": w + " ", "done": False} for w in words]
        if "thinking" in m["capabilities"] and data.get("think") is not False:
            chunks.insert(0, {**base, "response": "", "thinking": "pondering", "done": False})
        chunks.append({**base, "response": "", "done": True, "done_reason": "stop", **METRICS})
        return await stream(request, chunks)

    async def chat(request: web.Request) -> web.StreamResponse:
        data = await body(request)
        m = known(data.get("model", ""))
        if m is None:
            return web.json_response({"error": f"model '{data.get('model')}' not found"},
                                     status=404)
        base = {"model": data["model"], "created_at": "2026-01-01T00:00:00Z"}
        last = data["messages"][-1]["content"]
        if "slow" in last:
            pieces = [{**base, "message": {"role": "assistant", "content": "tick "},
                       "done": False}] * 400
            return await stream(request, pieces, delay=0.05)
        reply = f"Echo({len(data['messages'])}): {last}"
        chunks = [{**base, "message": {"role": "assistant", "content": w + " "}, "done": False}
                  for w in reply.split(" ")]
        if "thinking" in m["capabilities"] and data.get("think") is not False:
            chunks.insert(0, {**base, "message": {"role": "assistant", "content": "",
                                                  "thinking": "Let me see.\n"}, "done": False})
        chunks.append({**base, "message": {"role": "assistant", "content": ""}, "done": True,
                       "done_reason": "stop", **METRICS})
        return await stream(request, chunks)

    async def create(request: web.Request) -> web.Response:
        data = await body(request)
        state.models[data["model"]] = {"capabilities": ["completion"]}
        return web.json_response({"status": "success"})

    async def tags(_: web.Request) -> web.Response:
        return web.json_response({"models": [
            {"name": n, "model": n, "size": 101_000_000, "digest": "ab" * 32,
             "modified_at": "2026-01-01T00:00:00Z"} for n in state.models]})

    app = web.Application()
    app.router.add_get("/", root)
    app.router.add_get("/api/version", version)
    app.router.add_post("/api/show", show)
    app.router.add_post("/api/pull", pull)
    app.router.add_post("/api/generate", generate)
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/api/create", create)
    app.router.add_get("/api/tags", tags)
    return app


@contextmanager
def fake_server() -> Iterator[tuple[str, FakeState]]:
    """Serve the fake API on 127.0.0.1:<free port> in a daemon thread; yields (host, state)."""
    state = FakeState()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(state))
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    assert ready.wait(10)
    try:
        yield f"127.0.0.1:{port}", state
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)
        if not t.is_alive():
            loop.close()
