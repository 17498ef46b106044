"""The generation engine: plan -> lease -> prompt -> upstream body -> event stream.

`run` is an async generator of typed events (inference/events.py); closing it early closes the
upstream stream, so llama-server frees the slot at once. Errors are raised (OllamaError
subclasses), before or after the first event. Nothing here knows about HTTP serving or any wire
format; the runner is reached only through `lease.client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ollamapy.api.inference import Message, Tool
from ollamapy.errors import BadRequest, OllamaError
from ollamapy.inference import chat_format, sampling
from ollamapy.inference import images as image_input
from ollamapy.inference import prompt as prompts
from ollamapy.inference.embed import EmbedResult, embed_all
from ollamapy.inference.events import FLUSH, Done, DoneReason, Event, Flush, TextDelta
from ollamapy.inference.family import Parser as FamilyParser
from ollamapy.inference.family import Renderer as FamilyRenderer
from ollamapy.inference.family_output import FamilyOutput
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.inference.output import NO_LOGPROBS, OutputParser, logprobs, step_events
from ollamapy.inference.parsers.harmony import HarmonyParser
from ollamapy.inference.plan import (
    Plan,
    merged_options,
    plan_chat,
    plan_generate,
    prefetch,
    resolve_model,
)
from ollamapy.inference.renderers.jinja_kwargs import chat_template_kwargs
from ollamapy.inference.request import InferenceRequest
from ollamapy.inference.services import RunnerLease, Services
from ollamapy.runner.client import RunnerConnectionError
from ollamapy.template import isolate
from ollamapy.template.gotemplate import Template
from ollamapy.template.thinking import ThinkingParser, tags_from_jinja, thinking_tags
from ollamapy.template.tools import ToolParser, tag_from_jinja, tool_tag

log = logging.getLogger("ollamapy.inference")



# ------------------------------------------------------------------ pure helpers


def done_reason(final: JsonObject) -> DoneReason:
    """llama-server stop_type -> Ollama done_reason."""
    if final.get("stop_type") == "limit" or final.get("truncated"):
        return "length"
    return "stop"


def finish(final: JsonObject, start_ns: int, load_s: float) -> Done:
    """The final upstream event -> Done (Ollama's integer-nanosecond metrics;
    prompt_eval_count includes cached prompt tokens, cache_n + prompt_n)."""
    t = final.get("timings") or {}
    cached = int(t.get("cache_n", 0) or 0)
    return Done(
        done_reason=done_reason(final),
        stop_sequence=final.get("stopping_word") or None,
        prompt_eval_count=cached + int(t.get("prompt_n", 0) or 0),
        cached_prompt_tokens=cached,
        eval_count=int(t.get("predicted_n", final.get("tokens_predicted", 0)) or 0),
        total_duration=time.monotonic_ns() - start_ns,
        load_duration=int(load_s * 1e9),
        prompt_eval_duration=int(float(t.get("prompt_ms", 0) or 0) * 1e6),
        eval_duration=int(float(t.get("predicted_ms", 0) or 0) * 1e6),
    )


def renderer(plan: Plan, lease: RunnerLease, template: Template | None,
             family: FamilyRenderer | None = None) -> prompts.Renderer:
    client = lease.client

    async def tok(text: str, add_special: bool) -> list[int]:
        return await client.tokenize(text, add_special=add_special)

    async def apply(msgs: list[JsonObject], tools: list[JsonObject] | None,
                    think: bool | str | None) -> str:
        return await client.apply_template(msgs, tools=tools,
                                           chat_template_kwargs=chat_template_kwargs(think))

    return prompts.Renderer(template, tok, apply, bool(plan.model.projector_paths),
                            jinja_source=str(lease.props.get("chat_template") or ""),
                            skeleton_key=f"{client.base_url}|{plan.model.digest}",
                            family=family)


def media_marker(lease: RunnerLease) -> str | None:
    marker = lease.props.get("media_marker")
    return marker if isinstance(marker, str) and marker else None


async def model_template(plan: Plan) -> Template | None:
    """The model's Go TEMPLATE when it renders the prompt (see chat_format); parsed off the
    loop the first time (the model's file decides its size)."""
    src = chat_format.go_template_source(plan.model)
    return await prompts.compile_template_off_loop(src) if src is not None else None


def _thinking_parser(plan: Plan, lease: RunnerLease, template: Template | None,
                     prompt_text: str) -> ThinkingParser | None:
    if not (plan.think and "thinking" in (plan.model.capabilities or ())):
        return None
    tags = (_thinking_tags(template) if template is not None
            else _jinja_thinking_tags(str(lease.props.get("chat_template", ""))))
    if tags is None and template is not None:
        tags = ("<think>", "</think>")
    return ThinkingParser.for_prompt(tags, prompt_text) if tags is not None else None


T = TypeVar("T")


def _per_template(fn: Callable[[Template | None], T]) -> Callable[[Template | None], T]:
    """`fn` worked out once per template, held like the template cache holds templates: a
    source too large for that cache (a client's own `template`) is not kept here either."""
    cached = functools.lru_cache(maxsize=64)(fn)

    def get(template: Template | None) -> T:
        if template is not None and len(template.source) > prompts.MAX_CACHED_TEMPLATE:
            return fn(template)
        return cached(template)

    return get


# What a template says about its thinking and tool-call tags (templates are parsed once per
# source, so the same Template comes back on every request; a thinking_tags walk costs ~0.1 ms).
_thinking_tags = _per_template(thinking_tags)
_jinja_thinking_tags = functools.lru_cache(maxsize=64)(tags_from_jinja)
_tool_tag = _per_template(tool_tag)
_jinja_tool_tag = functools.lru_cache(maxsize=64)(tag_from_jinja)


def output_parser(plan: Plan, lease: RunnerLease, template: Template | None, prompt_text: str,
                  tools: list[str] | None, family: FamilyParser | None = None) -> OutputParser:
    if family is not None:
        # the family parser splits thinking itself; a Go template's tool format parser
        # (no thinking of its own) gets the template's thinking split in front of it
        out = FamilyOutput(family=family)
        if not family.has_thinking_support():
            out.thinking = _thinking_parser(plan, lease, template, prompt_text)
        if tools and not family.has_tool_support():
            out.tools = ToolParser(_tool_tag(template) or "{", tools)
        return out
    parser = OutputParser(_thinking_parser(plan, lease, template, prompt_text))
    if tools:
        tag = (_tool_tag(template) if template is not None
               else _jinja_tool_tag(str(lease.props.get("chat_template", ""))))
        parser.tools = ToolParser(tag or "{", tools)
    return parser


def completion_body(plan: Plan, lease: RunnerLease, p: prompts.Prompt) -> JsonObject:
    prompt: Any = p.tokens if p.tokens is not None else p.text
    if p.images:
        marker = lease.props.get("media_marker")
        if not isinstance(marker, str) or not marker:
            raise BadRequest("this model does not support image input")
        text = p.text
        for i in range(len(p.images)):
            text = text.replace(f"[img-{i}]", marker, 1)
        prompt = {"prompt_string": text, "multimodal_data": p.images}
    body: JsonObject = {"prompt": prompt, "cache_prompt": True,
                        **sampling.completion_fields(plan.options, lease.num_ctx),
                        **plan.fmt}
    if plan.logprobs:
        body["n_probs"] = max(1, plan.top_logprobs)
    if plan.think and plan.fmt:
        # constrained output and free-form thinking do not mix in one pass
        log.debug("format with thinking: constraining the whole output")
    return body


def add_preserved_tokens(body: JsonObject, family: FamilyParser | None,
                         template: Template | None, tools: bool) -> None:
    """Ask llama-server to print the parser's tags as text (they are special tokens in most
    vocabularies and would be dropped from the output otherwise), as Ollama does."""
    toks = chat_format.preserved_tokens(family)
    if tools and template is not None and (family is None or not family.has_tool_support()):
        tag = chat_format.special_token_of_tag(tool_tag(template))
        if tag and tag not in toks:
            toks.append(tag)
    if toks:
        body["preserved_tokens"] = toks


LEADING_BOS = "<bos>"
_ADDS_BOS: OrderedDict[str, bool] = OrderedDict()  # runner+model -> tokenizer adds BOS
MAX_ADDS_BOS = 64


async def strip_leading_bos(lease: RunnerLease, digest: str, p: prompts.Prompt,
                            bos: str = "") -> prompts.Prompt:
    """A prompt starting with a textual `<bos>` (gemma templates) or with the BOS text of its
    renderer (`bos`, renderers' `leading_bos`) loses it when the runner's tokenizer adds BOS
    itself, as in Ollama; otherwise llama-server would see two BOS tokens. Whether it does is
    asked once per runner and model (an empty /tokenize with specials)."""
    lead = bos if bos and p.text.startswith(bos) else LEADING_BOS
    if p.tokens is not None or not p.text.startswith(lead):
        return p
    key = f"{lease.client.base_url}|{digest}"
    adds = _ADDS_BOS.get(key)
    if adds is None:
        adds = bool(await lease.client.tokenize("", add_special=True))
        _ADDS_BOS[key] = adds
        while len(_ADDS_BOS) > MAX_ADDS_BOS:
            _ADDS_BOS.popitem(last=False)
    if not adds:
        return p
    return prompts.Prompt(p.text[len(lead):], p.images)


async def compile_request_template(source: str) -> Template:
    """The request's own `template`, parsed off the loop (its size is the client's)."""
    try:
        return await prompts.compile_template_off_loop(source)
    except BadRequest as e:  # Ollama answers a bad request template with 500
        raise OllamaError(e.message, status=500) from None


# ------------------------------------------------------------------ one completion


@dataclass(slots=True)
class Pass:
    """What a completion pass leaves behind besides its events."""

    final: JsonObject | None = None
    used: int = 0  # tokens generated
    thought: list[str] = field(default_factory=list)
    tokens: list[int] | None = None  # every token id, when `context` is wanted


async def relay(upstream: AsyncGenerator[JsonObject | Flush, None], parser: OutputParser,
                top: int | None, st: Pass, stop_after_thinking: bool = False,
                fail: Callable[[BaseException], OllamaError] | None = None
                ) -> AsyncGenerator[Event, None]:
    """One upstream /completion's events -> engine events, each as soon as it arrives (only
    text that may start a thinking or tool-call tag is held back, as Ollama does); the final
    upstream event is left in `st.final`. `top` not None: per-token log probabilities are
    passed on. `stop_after_thinking`: return as soon as the thinking block has closed,
    dropping the free-form content after it. `fail` (the lease's): what a lost runner
    connection is reported as. Closing this closes the upstream."""
    plain = parser.plain and not stop_after_thinking
    collect = st.tokens
    try:
        async with contextlib.aclosing(upstream) as events:
            async for ev in events:
                if isinstance(ev, Flush):
                    yield FLUSH
                    continue
                toks: list[int] = ev.get("tokens") or []
                st.used += len(toks)
                if collect is not None:
                    collect.extend(toks)
                if ev.get("stop"):
                    text = ev.get("content") or ""
                    th, content, calls = parser.feed(text) if text else ("", "", [])
                    th2, c2, calls2 = parser.finish()
                    for e in step_events(th + th2, content + c2, calls + calls2, toks,
                                         NO_LOGPROBS):
                        yield e
                    st.final = ev
                    return
                probs = (logprobs(ev.get("completion_probabilities"), top) if top is not None
                         else NO_LOGPROBS)
                if plain:
                    text = ev.get("content", "")
                    if text or probs:
                        yield TextDelta(text, toks, probs)
                    continue
                th, content, calls = parser.feed(ev.get("content", ""))
                if stop_after_thinking:
                    st.thought.append(th)
                    thinking = parser.thinking
                    if thinking is not None and thinking.state == "content":
                        # thinking is over: drop free-form content, continue constrained
                        for e in step_events(th, "", (), toks, probs):
                            yield e
                        return
                for e in step_events(th, content, calls, toks, probs):
                    yield e
    except RunnerConnectionError as err:
        if fail is None:  # no lease to blame (the relay tests drive it bare)
            raise
        raise fail(err) from None


def _completion(plan: Plan, lease: RunnerLease, body: JsonObject, parser: OutputParser,
                st: Pass) -> AsyncGenerator[Event, None]:
    """Stream one completion (the relay itself when there is one pass: no layer of its own
    per streamed token). A thinking model asked for a `format` thinks freely first; once its
    thinking closes, generation restarts constrained, continuing from the thinking (Ollama
    does the same: a grammar would forbid the thinking block)."""
    top = plan.top_logprobs if plan.logprobs else None
    if not (bool(plan.fmt) and parser.thinking is not None):
        return relay(lease.client.completion(body), parser, top, st, fail=lease.fail)
    return _two_phase(plan, lease, body, parser, st, top)


async def _two_phase(plan: Plan, lease: RunnerLease, body: JsonObject, parser: OutputParser,
                     st: Pass, top: int | None) -> AsyncGenerator[Event, None]:
    thinking = parser.thinking
    assert thinking is not None
    first = {k: v for k, v in body.items() if k not in plan.fmt}
    async for e in relay(lease.client.completion(first), parser, top, st,
                         stop_after_thinking=True, fail=lease.fail):
        yield e
    if st.final is not None:
        return
    opened = "" if thinking.started_inside else thinking.open_tag
    cont = f"{opened}{''.join(st.thought)}{thinking.close_tag}\n\n"
    p = body["prompt"]
    if isinstance(p, dict):
        p = {**p, "prompt_string": p["prompt_string"] + cont}
    elif isinstance(p, list):
        p = [*p, cont]
    else:
        p = p + cont
    second = {**body, "prompt": p,
              "n_predict": max(int(body.get("n_predict", 0)) - st.used, 1)}
    rest = (FamilyOutput(None, parser.tools, parser.family)
            if isinstance(parser, FamilyOutput) else OutputParser(None, parser.tools))
    async for e in relay(lease.client.completion(second), rest, top, st, fail=lease.fail):
        yield e


# ------------------------------------------------------------------ run


async def run(services: Services, req: InferenceRequest,
              watch: Callable[[Event], None] | None = None) -> AsyncGenerator[Event, None]:
    """One generate (`req.prompt`) or chat (`req.messages`) request as events; the last event
    is a Done. Unload (empty request, keep_alive 0) and load-only requests end in a Done with
    done_reason "unload" / "load" and nothing else. `watch` (metrics) sees each event once
    its consumer has taken it (a Done, which may end the consumer, just before)."""
    start_ns = req.start_ns or time.monotonic_ns()
    chat = req.messages is not None
    await prefetch(services.store, req.model)
    plan = (plan_chat if chat else plan_generate)(services.store, req, start_ns)
    if plan is None:
        await services.scheduler.unload(resolve_model(services.store, req.model))
        done = Done(done_reason="unload")
        if watch is not None:
            watch(done)
        yield done
        return
    vision = bool(plan.model.projector_paths)
    if chat:
        req = await _prepared_messages(req, vision)
        images: list[str] = []
    elif req.images:
        images = await asyncio.to_thread(image_input.prepare, req.images, vision)
    else:
        images = []
    async with services.scheduler.lease(plan.model, plan.options, plan.keep_alive) as lease:
        if chat:
            events = _chat(plan, lease, req)
        else:
            events = _generate(plan, lease, req, images)
        async with contextlib.aclosing(events) as it:
            if watch is None:
                async for e in it:
                    yield e
            else:
                async for e in it:
                    if isinstance(e, Done):
                        watch(e)  # before: its consumer may stop at the Done
                        yield e
                    else:
                        yield e  # the writer sends it before the watch times it
                        watch(e)


async def _prepared_messages(req: InferenceRequest, vision: bool) -> InferenceRequest:
    """The chat's images checked and converted for the runner (in a worker thread)."""
    msgs = req.messages or []
    flat = [img for m in msgs for img in m.images or ()]
    if not flat:
        return req
    done = await asyncio.to_thread(image_input.prepare, flat, vision)
    it = iter(done)
    out = [m.model_copy(update={"images": [next(it) for _ in m.images]}) if m.images else m
           for m in msgs]
    return dataclasses.replace(req, messages=out)


async def _generate(plan: Plan, lease: RunnerLease, req: InferenceRequest,
                    images: list[str]) -> AsyncGenerator[Event, None]:
    if not req.prompt and not images and not req.debug_render_only:
        yield Done(done_reason="load")
        return
    template = None
    family = None
    if req.template:
        template = await compile_request_template(req.template)
    else:
        template = await model_template(plan)
        family = chat_format.family_renderer(plan.model, media_marker(lease))
    if req.suffix and template is None and plan.model.template:
        template = await prompts.compile_template_off_loop(plan.model.template)
    r = renderer(plan, lease, template, family)
    client = lease.client
    fam_parser: FamilyParser | None = None
    text = req.prompt or ""
    if images and not plan.model.projector_paths:
        raise BadRequest("this model does not support image input")
    if req.raw:
        p = prompts.Prompt(text, images)
    elif req.suffix:
        if template is None:
            raise BadRequest(f"{plan.model.name} does not support insert")
        p = prompts.Prompt(await isolate.render(
            prompts.render_fim, template, text, req.suffix, plan.think))
    else:
        msgs: list[Message] = []
        system = req.system if req.system else plan.model.system
        if system:
            msgs.append(Message(role="system", content=system))
        if not req.context:
            msgs.extend(Message.model_validate(m) for m in plan.model.messages)
        msgs.append(Message(role="user", content=text, images=images or None))
        fam_parser = chat_format.family_parser(plan.model, template, None)
        think = plan.think
        if isinstance(fam_parser, HarmonyParser):
            think = chat_format.harmony_think(think)
        if fam_parser is not None:
            fam_parser.init(None, msgs[-1], think)
        p = await prompts.fit_messages(r, msgs, None, think, lease.num_ctx, plan.truncate)
        if req.context:
            nv = await client.n_vocab()
            prefix = await client.detokenize(req.context, nv)
            p = prompts.Prompt(prefix + p.text, p.images)
    if req.debug_render_only:
        yield Done(debug_rendered=p.text, debug_image_count=len(p.images))
        return
    p = await strip_leading_bos(lease, plan.model.digest, p, chat_format.leading_bos(family))
    p = await prompts.shift_fit(r, p, lease.num_ctx, int(plan.options.get("num_keep", 4)),
                                plan.truncate, plan.shift)
    body = completion_body(plan, lease, p)
    add_preserved_tokens(body, fam_parser, template, False)
    want_context = req.want_context and not req.raw
    parser = output_parser(plan, lease, template, p.text, None, fam_parser)
    st = Pass(tokens=[] if want_context else None)
    ctx_task: asyncio.Future[list[int]] | None = None
    prompt_tokens = p.tokens

    def prompt_ids() -> asyncio.Future[list[int]]:
        if prompt_tokens is not None:
            fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
            fut.set_result(prompt_tokens)
            return fut
        return asyncio.ensure_future(client.tokenize(p.text, add_special=True))

    try:
        # The prompt's token ids for `context` are fetched while the runner evaluates the
        # prompt: the task's first step runs once this one waits for the runner's answer, so
        # the /completion goes out first, and the /tokenize round trip is over before the
        # first token (after it, it would hold the CPU the client needs to take that token).
        if want_context:
            ctx_task = prompt_ids()
        async with contextlib.aclosing(_completion(plan, lease, body, parser, st)) as it:
            async for e in it:
                yield e
        assert st.final is not None
        done = finish(st.final, plan.start_ns, lease.load_duration)
        if ctx_task is not None:
            done.context = list(await ctx_task) + (st.tokens or [])
        yield done
    finally:
        if ctx_task is not None and not ctx_task.done():
            ctx_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ctx_task


@dataclass(slots=True)
class ChatSetup:
    """What `_chat_prompt` decided: the template and renderer used, the fitted prompt, the
    family parser (initialised for this request) and its renderer's BOS text."""

    template: Template | None
    renderer: prompts.Renderer
    prompt: prompts.Prompt
    parser: FamilyParser | None
    leading_bos: str


async def _chat_prompt(plan: Plan, lease: RunnerLease, req: InferenceRequest,
                       given: list[Message]) -> ChatSetup:
    """The model's messages, system prompt and the request's conversation, rendered and fitted
    to the context: what `_chat` sends and `count_tokens` counts."""
    if any(m.images for m in given) and not plan.model.projector_paths:
        raise BadRequest("this model does not support image input")
    template = await model_template(plan)
    family = chat_format.family_renderer(plan.model, media_marker(lease))
    r = renderer(plan, lease, template, family)
    msgs = [Message.model_validate(m) for m in plan.model.messages] + list(given)
    if plan.model.system and given[0].role != "system":
        msgs.insert(0, Message(role="system", content=plan.model.system))
    model_family = str(plan.model.config.get("model_family", ""))
    msgs = prompts.strip_old_thinking(msgs, model_family)
    tools: Sequence[Tool] | None = req.tools or None
    think = plan.think
    fam_parser = chat_format.family_parser(plan.model, template, tools)
    if isinstance(fam_parser, HarmonyParser):
        think = chat_format.harmony_think(think)
    if fam_parser is not None:
        fam_parser.init(tools, msgs[-1] if msgs else None, think)
        if isinstance(fam_parser, HarmonyParser) and tools:
            tools = fam_parser.prompt_tools(tools)
    p = await prompts.fit_messages(r, msgs, tools, think, lease.num_ctx, plan.truncate)
    return ChatSetup(template, r, p, fam_parser, chat_format.leading_bos(family))


async def count_tokens(services: Services, req: InferenceRequest) -> int:
    """Tokens of the chat prompt `run` would send, counted by the model's own tokenizer on its
    runner; nothing is generated (Anthropic's `/v1/messages/count_tokens`)."""
    await prefetch(services.store, req.model)
    plan = plan_chat(services.store, req, time.monotonic_ns())
    if plan is None or not req.messages:
        raise BadRequest("messages is required")
    async with services.scheduler.lease(plan.model, plan.options, plan.keep_alive) as lease:
        setup = await _chat_prompt(plan, lease, req, req.messages)
        return len(await setup.renderer.tokenize(setup.prompt.text, True))


async def _chat(plan: Plan, lease: RunnerLease, req: InferenceRequest
                ) -> AsyncGenerator[Event, None]:
    given = req.messages or []
    if not given:
        yield Done(done_reason="load")
        return
    setup = await _chat_prompt(plan, lease, req, given)
    template, r, p = setup.template, setup.renderer, setup.prompt
    tools: Sequence[Tool] | None = req.tools or None
    if req.debug_render_only:
        yield Done(debug_rendered=p.text, debug_image_count=len(p.images))
        return
    p = await strip_leading_bos(lease, plan.model.digest, p, setup.leading_bos)
    p = await prompts.shift_fit(r, p, lease.num_ctx, int(plan.options.get("num_keep", 4)),
                                plan.truncate, plan.shift)
    body = completion_body(plan, lease, p)
    add_preserved_tokens(body, setup.parser, template, bool(tools))
    names = [t.function.name for t in tools] if tools else None
    parser = output_parser(plan, lease, template, p.text, names, setup.parser)
    st = Pass()
    async with contextlib.aclosing(_completion(plan, lease, body, parser, st)) as it:
        async for e in it:
            yield e
    assert st.final is not None
    yield finish(st.final, plan.start_ns, lease.load_duration)


# ------------------------------------------------------------------ embeddings


async def embed(services: Services, model: str, inputs: Sequence[str], *,
                options: JsonObject | None = None, keep_alive: float | None = None,
                truncate: bool = True, normalize: int = 2,
                not_found: str | None = None) -> EmbedResult:
    """Load `model` as an embedding runner, fit each input to its context, embed them (bounded
    batches, never one upstream request per input). Vectors come back as the runner made them
    (`normalize`: 2 = L2, -1 = raw); see embed.shape_vectors for the API's shaping."""
    await prefetch(services.store, model)
    m = resolve_model(services.store, model, not_found=not_found)
    opts = merged_options(m, options)
    async with services.scheduler.lease(m, opts, keep_alive, embedding=True) as lease:
        if not inputs:
            return EmbedResult([], 0, lease.load_duration)
        settings = lease.props.get("default_generation_settings") or {}
        ctx_train = int(settings.get("n_ctx", 0) or 0)
        limit = min(lease.num_ctx, ctx_train) if ctx_train else lease.num_ctx
        limit = max(limit - 2, 1)  # room for BOS/EOS
        slots = int(lease.props.get("total_slots", 1) or 1)
        try:
            vecs, n = await embed_all(lease.client, inputs, limit, truncate, normalize, slots)
        except RunnerConnectionError as e:
            raise lease.fail(e) from None
        return EmbedResult(vecs, n, lease.load_duration)


# ------------------------------------------------------------------ rerank


@dataclass(slots=True)
class RerankResult:
    ranked: list[tuple[int, float]]  # (document index, relevance score), best first
    prompt_tokens: int
    load_duration: float


async def rerank(services: Services, model: str, query: str, documents: Sequence[str], *,
                 top_n: int | None = None, keep_alive: float | None = None) -> RerankResult:
    """Score `documents` against `query` on a reranker model's runner (started with
    --rerank); the `top_n` best (all by default), best first."""
    await prefetch(services.store, model)
    m = resolve_model(services.store, model)
    if not m.reranker:
        raise BadRequest(f'"{model}" does not support rerank')
    opts = merged_options(m, None)
    n = len(documents) if top_n is None else min(top_n, len(documents))
    async with services.scheduler.lease(m, opts, keep_alive, embedding=True) as lease:
        try:
            ranked, tokens = await lease.client.rerank(query, documents, n)
        except RunnerConnectionError as e:
            raise lease.fail(e) from None
        return RerankResult(ranked[:n], tokens, lease.load_duration)
