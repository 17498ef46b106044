"""`/api/generate`, `/api/chat`, `/api/embed`, `/api/embeddings`.

Thin shells: decode + validate (api/inference.py), resolve the model (store), take a runner slot
(scheduler), render the prompt (prompt.py), stream `/completion` (runner/client.py) through the
relay (relay.py). Chunk producers are async generators of Ollama chunks shared with the OpenAI
routes. Upstream is always streamed; a client that goes away cancels the handler, which closes the
upstream response so llama-server frees the slot at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ollamapy import options as ollama_options
from ollamapy import prompt as prompts
from ollamapy import sampling
from ollamapy.api.decode import decode
from ollamapy.api.inference import (
    ChatRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
    Message,
    check_images,
)
from ollamapy.errors import BadRequest, ClientClosed, NotFound, OllamaError, RunnerError
from ollamapy.keepalive import parse_keep_alive
from ollamapy.relay import (
    FLUSH,
    Aggregate,
    OutputParser,
    Step,
    chat_chunk,
    finish_chunk,
    generate_chunk,
    ndjson,
    now_rfc3339,
    steps,
)
from ollamapy.runner import client as upstream
from ollamapy.server import keys, metrics
from ollamapy.server.middleware import STREAM_RESPONSE
from ollamapy.store.model import Model
from ollamapy.store.names import ModelName
from ollamapy.template.gotemplate import Template
from ollamapy.template.thinking import ThinkingParser, tags_from_jinja, thinking_tags
from ollamapy.template.tools import ToolParser, tag_from_jinja, tool_tag

log = logging.getLogger("ollamapy.inference")

DISCONNECT_POLL_S = 0.05
Chunks = AsyncGenerator[dict[str, Any], None]


# ------------------------------------------------------------------ shared plumbing


def resolve_model(app: web.Application, name: str, *, not_found: str | None = None) -> Model:
    """Name -> Model through the store (which caches it while the manifest is unchanged)."""
    ModelName.parse(name)  # invalid -> BadRequest("invalid model name")
    try:
        return app[keys.STORE_KEY].resolve(name)
    except NotFound:
        raise NotFound(not_found or f"model '{name}' not found") from None


def has_cap(model: Model, cap: str) -> bool:
    caps = model.capabilities or ("completion",)
    return cap in caps


def check_think(model: Model, req_model: str, think: bool | str | None) -> bool | str | None:
    """Thinking-capable models think by default; asking a non-thinking model to think is 400."""
    if has_cap(model, "thinking"):
        return True if think is None else think
    if think:
        raise BadRequest(f'"{req_model}" does not support thinking')
    return think


def merged_options(model: Model, opts: dict[str, Any] | None) -> dict[str, Any]:
    params = ollama_options.validate(model.params) if model.params else {}
    return ollama_options.merge(params, ollama_options.validate(opts))


async def until_disconnect(request: web.Request, work: Awaitable[web.StreamResponse]
                           ) -> web.StreamResponse:
    """Run the handler body; if the client's connection goes away first, cancel it (closing the
    upstream stream so a 1-slot runner is free at once)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                return task.result()
            tr = request.transport
            if tr is None or tr.is_closing():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                resp = request.get(STREAM_RESPONSE)
                if resp is not None:
                    return resp
                raise ClientClosed()
    except asyncio.CancelledError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise


async def write_stream(request: web.Request, chunks: Chunks, *,
                       encode: Callable[[dict[str, Any]], bytes], content_type: str,
                       error: Callable[[OllamaError], bytes], tail: bytes = b"",
                       sse: bool = False) -> web.StreamResponse:
    """Write each chunk as it comes. Nothing is sent before the first chunk exists, so earlier
    errors still get a real status; later ones become a final error line."""
    resp: web.StreamResponse | None = None
    pending: list[bytes] = []
    try:
        async for ch in chunks:
            if ch is FLUSH:
                if pending and resp is not None:
                    await resp.write(b"".join(pending))
                    pending.clear()
                continue
            data = encode(ch)
            if resp is None:
                resp = web.StreamResponse(headers={"Content-Type": content_type})
                if sse:
                    resp.headers["Cache-Control"] = "no-cache"
                    resp.headers["X-Accel-Buffering"] = "no"
                request[STREAM_RESPONSE] = resp
                await resp.prepare(request)
            if data:
                pending.append(data)
        if resp is not None and (pending or tail):
            await resp.write(b"".join(pending) + tail)
            pending.clear()
    except OllamaError as e:
        if resp is None:
            raise
        log.warning("stream failed after start: %s", e.message)
        with contextlib.suppress(ConnectionError):
            await resp.write(b"".join(pending) + error(e))
    except ConnectionError:
        log.debug("client went away mid-stream")
        return resp if resp is not None else web.Response(status=499)
    except Exception:
        if resp is None:
            raise
        log.exception("stream failed after start")
        with contextlib.suppress(ConnectionError):
            await resp.write(b"".join(pending) + error(OllamaError("internal server error")))
    finally:
        await chunks.aclose()  # closes upstream at once
    if resp is None:
        raise RunnerError("no response from llama runner")
    with contextlib.suppress(ConnectionError):
        await resp.write_eof()
    return resp


def ndjson_error(e: OllamaError) -> bytes:
    return ndjson({"error": e.message})


async def aggregate(chunks: Chunks) -> dict[str, Any]:
    """A non-streaming answer: every chunk folded into one (upstream is still streamed)."""
    agg = Aggregate()
    try:
        async for ch in chunks:
            agg.add(ch)
    finally:
        await chunks.aclose()
    if agg.last is None:
        raise RunnerError("no response from llama runner")
    return agg.result()


async def respond(request: web.Request, chunks: Chunks, stream: bool) -> web.StreamResponse:
    chunks = metrics.observe_chunks(request, chunks)
    if stream:
        return await write_stream(request, chunks, encode=ndjson,
                                  content_type="application/x-ndjson", error=ndjson_error)
    return web.json_response(await aggregate(chunks))


# ------------------------------------------------------------------ generation core


@dataclass
class Plan:
    """Everything decided before the runner is touched."""

    model: Model
    req_model: str
    options: dict[str, Any]
    keep_alive: float | None
    fmt: dict[str, Any]
    think: bool | str | None
    start_ns: int
    truncate: bool
    shift: bool
    logprobs: bool = False
    top_logprobs: int = 0


def renderer(plan: Plan, lease: Any, template: Template | None) -> prompts.Renderer:
    async def tok(text: str, add_special: bool) -> list[int]:
        return await upstream.tokenize(lease.session, lease.base_url, text,
                                       add_special=add_special)

    async def apply(msgs: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                    think: bool | None) -> str:
        return await upstream.apply_template(lease.session, lease.base_url, msgs, tools=tools,
                                             enable_thinking=think)

    return prompts.Renderer(template, tok, apply, bool(plan.model.projector_paths),
                            jinja_source=str(lease.props.get("chat_template") or ""),
                            skeleton_key=f"{lease.base_url}|{plan.model.digest}")


def output_parser(plan: Plan, lease: Any, template: Template | None, prompt_text: str,
                  tools: list[str] | None) -> OutputParser:
    parser = OutputParser()
    if plan.think and has_cap(plan.model, "thinking"):
        tags = (thinking_tags(template) if template is not None
                else tags_from_jinja(str(lease.props.get("chat_template", ""))))
        if tags is None and template is not None:
            tags = ("<think>", "</think>")
        if tags is not None:
            parser.thinking = ThinkingParser.for_prompt(tags, prompt_text)
    if tools:
        tag = (tool_tag(template) if template is not None
               else tag_from_jinja(str(lease.props.get("chat_template", ""))))
        parser.tools = ToolParser(tag or "{", tools)
    return parser


def completion_body(plan: Plan, lease: Any, p: prompts.Prompt) -> dict[str, Any]:
    prompt: Any = p.tokens if p.tokens is not None else p.text
    if p.images:
        marker = lease.props.get("media_marker")
        if not isinstance(marker, str) or not marker:
            raise BadRequest("this model does not support image input")
        text = p.text
        for i in range(len(p.images)):
            text = text.replace(f"[img-{i}]", marker, 1)
        prompt = {"prompt_string": text, "multimodal_data": p.images}
    body: dict[str, Any] = {"prompt": prompt, "cache_prompt": True,
                            **sampling.completion_fields(plan.options, lease.num_ctx),
                            **plan.fmt}
    if plan.logprobs:
        body["n_probs"] = max(1, plan.top_logprobs)
    if plan.think and plan.fmt:
        # constrained output and free-form thinking do not mix in one pass
        log.debug("format with thinking: constraining the whole output")
    return body


LEADING_BOS = "<bos>"
_ADDS_BOS: OrderedDict[str, bool] = OrderedDict()  # runner+model -> tokenizer adds BOS
MAX_ADDS_BOS = 64


async def strip_leading_bos(lease: Any, p: prompts.Prompt) -> prompts.Prompt:
    """A prompt starting with a textual `<bos>` (gemma templates) loses it when the runner's
    tokenizer adds BOS itself, as in Ollama; otherwise llama-server would see two BOS tokens.
    Whether it does is asked once per runner and model (an empty /tokenize with specials)."""
    if p.tokens is not None or not p.text.startswith(LEADING_BOS):
        return p
    key = f"{lease.base_url}|{lease.model.digest}"
    adds = _ADDS_BOS.get(key)
    if adds is None:
        adds = bool(await upstream.tokenize(lease.session, lease.base_url, "",
                                            add_special=True))
        _ADDS_BOS[key] = adds
        while len(_ADDS_BOS) > MAX_ADDS_BOS:
            _ADDS_BOS.popitem(last=False)
    if not adds:
        return p
    return prompts.Prompt(p.text[len(LEADING_BOS):], p.images)


async def run_completion(plan: Plan, lease: Any, body: dict[str, Any],
                         parser: OutputParser) -> AsyncGenerator[Step, None]:
    """Stream one completion as steps. A thinking model asked for a `format` thinks freely
    first; once its thinking closes, generation restarts constrained, continuing from the
    thinking (Ollama does the same: a grammar would forbid the thinking block)."""
    top = plan.top_logprobs if plan.logprobs else None
    thinking = parser.thinking
    two_phase = bool(plan.fmt) and thinking is not None
    first = {k: v for k, v in body.items() if k not in plan.fmt} if two_phase else body
    try:
        thought: list[str] = []
        used = 0
        gen = steps(upstream.completion_stream(lease.session, lease.base_url, first), parser,
                    top)
        try:
            async for s in gen:
                used += len(s.tokens)
                if not two_phase or s.final is not None:
                    yield s
                    if s.final is not None:
                        return
                    continue
                thought.append(s.thinking)
                if thinking is not None and thinking.state == "content":
                    # thinking is over: drop free-form content, continue constrained
                    yield Step(thinking=s.thinking, tokens=s.tokens, logprobs=s.logprobs)
                    break
                yield s
            else:
                return
        finally:
            await gen.aclose()  # frees the slot before the second pass asks for one
        assert thinking is not None
        opened = "" if thinking.started_inside else thinking.open_tag
        cont = f"{opened}{''.join(thought)}{thinking.close_tag}\n\n"
        prompt = body["prompt"]
        if isinstance(prompt, dict):
            prompt = {**prompt, "prompt_string": prompt["prompt_string"] + cont}
        elif isinstance(prompt, list):
            prompt = [*prompt, cont]
        else:
            prompt = prompt + cont
        second = {**body, "prompt": prompt,
                  "n_predict": max(int(body.get("n_predict", 0)) - used, 1)}
        rest = OutputParser(None, parser.tools)
        async with contextlib.aclosing(steps(upstream.completion_stream(
                lease.session, lease.base_url, second), rest, top)) as gen2:
            async for s in gen2:
                yield s
    except upstream.RunnerConnectionError as e:
        raise lease.fail(e) from None


async def generate_chunks(app: web.Application, plan: Plan, req: GenerateRequest, *,
                          context: bool = True) -> Chunks:
    """Ollama generate chunks; `context` False skips the prompt's token ids (an extra upstream
    /tokenize) for callers that never return them (/v1/completions)."""
    scheduler = app[keys.SCHEDULER_KEY]
    images = check_images(req.images)
    async with scheduler.lease(plan.model, plan.options, plan.keep_alive) as lease:
        load_s = lease.load_duration
        if req.prompt == "" and not images and not req.debug_render_only:
            yield {"model": plan.req_model, "created_at": now_rfc3339(), "response": "",
                   "done": True, "done_reason": "load"}
            return
        template = None
        if req.template:
            try:
                template = prompts.compile_template(req.template)
            except BadRequest as e:  # Ollama answers a bad request template with 500
                raise OllamaError(e.message, status=500) from None
        elif plan.model.template:
            template = prompts.compile_template(plan.model.template)
        r = renderer(plan, lease, template)
        if images and not plan.model.projector_paths:
            raise BadRequest("this model does not support image input")
        if req.raw:
            p = prompts.Prompt(req.prompt, images)
        elif req.suffix:
            if template is None:
                raise BadRequest(f"{plan.model.name} does not support insert")
            p = prompts.Prompt(prompts.render_fim(template, req.prompt, req.suffix, plan.think))
        else:
            msgs: list[Message] = []
            system = req.system if req.system else plan.model.system
            if system:
                msgs.append(Message(role="system", content=system))
            if not req.context:
                msgs.extend(Message.model_validate(m) for m in plan.model.messages)
            msgs.append(Message(role="user", content=req.prompt, images=images or None))
            p = await prompts.fit_messages(r, msgs, None, plan.think, lease.num_ctx,
                                           plan.truncate)
            if req.context:
                nv = await upstream.n_vocab(lease.session, lease.base_url)
                prefix = await upstream.detokenize(lease.session, lease.base_url, req.context,
                                                   nv)
                p = prompts.Prompt(prefix + p.text, p.images)
        if req.debug_render_only:
            yield {"model": plan.req_model, "created_at": now_rfc3339(), "done": True,
                   "_debug_info": {"rendered_template": p.text, "image_count": len(p.images)}}
            return
        p = await strip_leading_bos(lease, p)
        p = await prompts.shift_fit(r, p, lease.num_ctx, int(plan.options.get("num_keep", 4)),
                                    plan.truncate, plan.shift)
        body = completion_body(plan, lease, p)
        want_context = context and not req.raw
        ctx_task: asyncio.Future[list[int]] | None = None
        out_tokens: list[int] = []
        parser = output_parser(plan, lease, template, p.text, None)

        def prompt_ids() -> asyncio.Future[list[int]]:
            return asyncio.ensure_future(
                _const(p.tokens) if p.tokens is not None
                else upstream.tokenize(lease.session, lease.base_url, p.text, add_special=True))

        sent = False
        try:
            async with contextlib.aclosing(run_completion(plan, lease, body, parser)) as it:
                async for s in it:
                    if s.flush:
                        yield FLUSH
                        # the prompt's token ids for `context` are fetched while the answer
                        # streams, from the first resumption after the first chunk was flushed:
                        # the extra upstream request never delays the first token
                        if want_context and sent and ctx_task is None:
                            ctx_task = prompt_ids()
                        continue
                    out_tokens.extend(s.tokens)
                    chunk = generate_chunk(plan.req_model, s)
                    if s.final is not None:
                        finish_chunk(chunk, s.final, plan.start_ns, load_s)
                        if want_context:
                            if ctx_task is None:
                                ctx_task = prompt_ids()
                            chunk["context"] = list(await ctx_task) + out_tokens
                    elif s.empty():
                        continue
                    sent = True
                    yield chunk
        finally:
            if ctx_task is not None and not ctx_task.done():
                ctx_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ctx_task


async def _const(v: list[int]) -> list[int]:
    return v


async def chat_chunks(app: web.Application, plan: Plan, req: ChatRequest) -> Chunks:
    scheduler = app[keys.SCHEDULER_KEY]
    for m in req.messages:
        check_images(m.images)
    async with scheduler.lease(plan.model, plan.options, plan.keep_alive) as lease:
        load_s = lease.load_duration
        if not req.messages:
            yield {"model": plan.req_model, "created_at": now_rfc3339(),
                   "message": {"role": "assistant", "content": ""}, "done": True,
                   "done_reason": "load"}
            return
        if any(m.images for m in req.messages) and not plan.model.projector_paths:
            raise BadRequest("this model does not support image input")
        template = (prompts.compile_template(plan.model.template)
                    if plan.model.template else None)
        r = renderer(plan, lease, template)
        msgs = [Message.model_validate(m) for m in plan.model.messages] + list(req.messages)
        if plan.model.system and (not req.messages or req.messages[0].role != "system"):
            msgs.insert(0, Message(role="system", content=plan.model.system))
        family = str(plan.model.config.get("model_family", ""))
        msgs = prompts.strip_old_thinking(msgs, family)
        tools = req.tools or None
        p = await prompts.fit_messages(r, msgs, tools, plan.think, lease.num_ctx, plan.truncate)
        if req.debug_render_only:
            yield {"model": plan.req_model, "created_at": now_rfc3339(),
                   "message": {"role": "assistant", "content": ""}, "done": True,
                   "_debug_info": {"rendered_template": p.text, "image_count": len(p.images)}}
            return
        p = await strip_leading_bos(lease, p)
        p = await prompts.shift_fit(r, p, lease.num_ctx, int(plan.options.get("num_keep", 4)),
                                    plan.truncate, plan.shift)
        body = completion_body(plan, lease, p)
        names = [t.function.name for t in tools] if tools else None
        parser = output_parser(plan, lease, template, p.text, names)
        async with contextlib.aclosing(run_completion(plan, lease, body, parser)) as it:
            async for s in it:
                if s.flush:
                    yield FLUSH
                    continue
                chunk = chat_chunk(plan.req_model, s)
                if s.final is not None:
                    finish_chunk(chunk, s.final, plan.start_ns, load_s)
                elif s.empty():
                    continue
                yield chunk


# ------------------------------------------------------------------ request planning


def make_plan(model: Model, req: GenerateRequest | ChatRequest, keep_alive: float | None,
              start_ns: int) -> Plan:
    """The fields generate and chat share, once the request-specific checks have passed."""
    return Plan(model, req.model, merged_options(model, req.options), keep_alive,
                sampling.format_fields(req.format), check_think(model, req.model, req.think),
                start_ns, req.truncate is not False, req.shift is not False,
                bool(req.logprobs), req.top_logprobs or 0)


def plan_generate(app: web.Application, req: GenerateRequest, start_ns: int) -> Plan | None:
    """Validate a generate request. None = the unload shortcut applies."""
    if not req.model:
        raise NotFound("model '' not found")
    if req.raw and (req.template or req.system or req.context):
        raise BadRequest("raw mode does not support template, system, or context")
    model = resolve_model(app, req.model)
    keep_alive = parse_keep_alive(req.keep_alive)
    if req.prompt == "" and keep_alive == 0 and not req.images:
        return None
    if not has_cap(model, "completion"):
        raise BadRequest(f'"{req.model}" does not support generate')
    if req.suffix and not has_cap(model, "insert"):
        raise BadRequest(f"{model.name} does not support insert")
    return make_plan(model, req, keep_alive, start_ns)


def plan_chat(app: web.Application, req: ChatRequest, start_ns: int) -> Plan | None:
    if not req.model:
        raise BadRequest("model is required")
    model = resolve_model(app, req.model)
    keep_alive = parse_keep_alive(req.keep_alive)
    if not req.messages and keep_alive == 0:
        return None
    if not has_cap(model, "completion"):
        raise BadRequest(f'"{req.model}" does not support chat')
    if req.tools and not has_cap(model, "tools"):
        raise BadRequest(f"{model.name} does not support tools")
    return make_plan(model, req, keep_alive, start_ns)


async def unload(app: web.Application, model_name: str) -> None:
    model = resolve_model(app, model_name)
    await app[keys.SCHEDULER_KEY].unload(model)


# ------------------------------------------------------------------ handlers


async def generate(request: web.Request) -> web.StreamResponse:
    start = time.monotonic_ns()
    req = decode(GenerateRequest, await request.read())
    plan = plan_generate(request.app, req, start)
    if plan is not None:
        metrics.set_request_model(request, plan.model)
    if plan is None:
        await unload(request.app, req.model)
        return web.json_response({"model": req.model, "created_at": now_rfc3339(),
                                  "response": "", "done": True, "done_reason": "unload"})
    return await until_disconnect(request, respond(
        request, generate_chunks(request.app, plan, req), req.stream is not False))


async def chat(request: web.Request) -> web.StreamResponse:
    start = time.monotonic_ns()
    req = decode(ChatRequest, await request.read())
    plan = plan_chat(request.app, req, start)
    if plan is not None:
        metrics.set_request_model(request, plan.model)
    if plan is None:
        await unload(request.app, req.model)
        return web.json_response({"model": req.model, "created_at": now_rfc3339(),
                                  "message": {"role": "assistant", "content": ""},
                                  "done": True, "done_reason": "unload"})
    return await until_disconnect(request, respond(
        request, chat_chunks(request.app, plan, req), req.stream is not False))


# ------------------------------------------------------------------ embeddings


def normalize(vec: list[float]) -> list[float]:
    """L2-normalise (norm floor 1e-12); NaN/Inf is an error, as in Ollama."""
    s = math.fsum(x * x for x in vec)
    if not math.isfinite(s):
        raise RunnerError("embedding contains NaN or Inf values")
    norm = max(math.sqrt(s), 1e-12)
    return [x / norm for x in vec]


@dataclass
class EmbedResult:
    vectors: list[list[float]]
    prompt_tokens: int
    load_duration: float


async def embed_inputs(app: web.Application, model: Model, inputs: list[str],
                       opts: dict[str, Any], keep_alive: float | None, truncate: bool,
                       normalize_out: int = 2) -> EmbedResult:
    """Load the model as an embedding runner, fit each input to the context, embed them."""
    scheduler = app[keys.SCHEDULER_KEY]
    async with scheduler.lease(model, opts, keep_alive, embedding=True) as lease:
        if not inputs:
            return EmbedResult([], 0, lease.load_duration)
        ctx_train = int(lease.props.get("default_generation_settings", {}).get("n_ctx", 0) or 0)
        limit = min(lease.num_ctx, ctx_train) if ctx_train else lease.num_ctx
        limit = max(limit - 2, 1)  # room for BOS/EOS

        async def fit(text: str, limit: int) -> tuple[str, int]:
            toks = await upstream.tokenize(lease.session, lease.base_url, text)
            if len(toks) <= limit:
                return text, len(toks)
            if not truncate:
                raise BadRequest("the input length exceeds the context length")
            cut = toks[:limit]
            return await upstream.detokenize(lease.session, lease.base_url, cut), len(cut)

        fitted = await asyncio.gather(*(fit(t, limit) for t in inputs))
        try:
            try:
                vecs = await upstream.embeddings(lease.session, lease.base_url,
                                                 [t for t, _ in fitted], normalize=normalize_out)
            except OllamaError as e:
                batch = batch_limit(e.message)
                if batch is None or not truncate or batch - 2 >= limit:
                    raise
                # Ollama retries once with inputs cut to the runner's batch size
                fitted = await asyncio.gather(*(fit(t, batch - 2) for t in inputs))
                vecs = await upstream.embeddings(lease.session, lease.base_url,
                                                 [t for t, _ in fitted], normalize=normalize_out)
        except upstream.RunnerConnectionError as e:
            raise lease.fail(e) from None
        return EmbedResult(vecs, sum(n for _, n in fitted), lease.load_duration)


_BATCH_RE = re.compile(r"current batch size: (\d+)")


def batch_limit(message: str) -> int | None:
    """llama-server's "input (N tokens) is too large to process ... (current batch size: B)"."""
    m = _BATCH_RE.search(message)
    return int(m.group(1)) if m else None


def shape_vectors(vecs: list[list[float]], dimensions: int | None) -> list[list[float]]:
    out = []
    for v in vecs:
        v = normalize(v)
        if dimensions is not None and 0 < dimensions < len(v):
            v = normalize(v[:dimensions])
        out.append(v)
    return out


async def embed(request: web.Request) -> web.StreamResponse:
    start = time.monotonic_ns()
    req = decode(EmbedRequest, await request.read())
    if not req.model:
        raise BadRequest("model is required")
    inputs = req.inputs()
    if req.dimensions is not None and req.dimensions < 0:
        raise BadRequest("dimensions must be a positive integer")
    model = resolve_model(request.app, req.model)
    metrics.set_request_model(request, model)
    keep_alive = parse_keep_alive(req.keep_alive)
    opts = merged_options(model, req.options)

    async def work() -> web.StreamResponse:
        res = await embed_inputs(request.app, model, inputs, opts, keep_alive,
                                 req.truncate is not False)
        metrics.record_usage(request, res.prompt_tokens, 0)
        body: dict[str, Any] = {"model": req.model,
                                "embeddings": shape_vectors(res.vectors, req.dimensions)}
        if inputs:
            body["total_duration"] = time.monotonic_ns() - start
            body["load_duration"] = int(res.load_duration * 1e9)
            body["prompt_eval_count"] = res.prompt_tokens
        return web.json_response(body)

    return await until_disconnect(request, work())


async def embeddings(request: web.Request) -> web.StreamResponse:
    req = decode(EmbeddingsRequest, await request.read())
    if not req.model:
        raise BadRequest("model is required")
    model = resolve_model(request.app, req.model,
                          not_found=f'model "{req.model}" not found, try pulling it first')
    metrics.set_request_model(request, model)
    keep_alive = parse_keep_alive(req.keep_alive)
    opts = merged_options(model, req.options)

    async def work() -> web.StreamResponse:
        res = await embed_inputs(request.app, model, [req.prompt] if req.prompt else [], opts,
                                 keep_alive, True)
        return web.json_response({"embedding": res.vectors[0] if res.vectors else []})

    return await until_disconnect(request, work())


def setup(app: web.Application) -> None:
    app.router.add_post("/api/generate", generate)
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/api/embed", embed)
    app.router.add_post("/api/embeddings", embeddings)
