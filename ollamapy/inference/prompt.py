"""Messages -> the prompt string sent to llama-server `/completion`, fitted to num_ctx.

Two renderers: the model's Go TEMPLATE layer (every model pulled from Ollama's registry, rendered
by our Go-template interpreter exactly as Ollama does), or -- for GGUF-only models such as SmolLM2
-- the GGUF's own Jinja template through llama-server's `/apply-template`. Truncation follows
Ollama: drop the oldest messages, always keep system messages and the last message; a single
prompt still too long is cut in the middle (keeping num_keep tokens) as Ollama's runner does
when context shift is on (its default), else refused with Ollama's 400.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from ollamapy.api.inference import Message, Think, Tool
from ollamapy.errors import BadRequest
from ollamapy.inference.family import Renderer as FamilyRenderer
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.runner.client import CONTEXT_ERROR
from ollamapy.template import isolate
from ollamapy.template.gotemplate import (
    JsonList,
    Template,
    TemplateError,
    parse_or_reject,
    wrap_json,
)

IMAGE_TOKENS = 768  # what Ollama budgets per image when the model has a projector
_THINK_STRIP_FAMILIES = ("qwen3", "deepseek-r1")
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"

Tokenize = Callable[[str, bool], Awaitable[list[int]]]
# messages, tools, think (the engine turns think into the template's chat_template_kwargs)
ApplyTemplate = Callable[[list[JsonObject], list[JsonObject] | None, Think], Awaitable[str]]


@dataclass
class Renderer:
    """How to render for one model: a built-in family renderer (`family`, Ollama's RENDERER),
    else a parsed Go template, else (both None) the GGUF Jinja path.

    `skeleton_key` (runner + model identity) enables reuse of a Jinja render whose message
    contents were placeholders, when `jinja_source` treats contents as opaque text."""

    template: Template | None
    tokenize: Tokenize
    apply_template: ApplyTemplate
    has_projector: bool = False
    jinja_source: str = ""
    skeleton_key: str = ""
    family: FamilyRenderer | None = None


# A Jinja template that inspects or transforms message content (filters, methods, `in` tests)
# cannot be rendered once with placeholders and reused.
_CONTENT_USE = re.compile(
    r"""content['"]?\]?\s*(\||\.|\[)|\bin\s+(\w+\.content|\w+\[['"]content['"]\]|content)\b""")
_SKELETONS: OrderedDict[tuple[str, tuple[str, ...], Think], list[str] | None] = OrderedDict()
MAX_SKELETONS = 512


def content_is_opaque(jinja_source: str) -> bool:
    return bool(jinja_source) and _CONTENT_USE.search(jinja_source) is None


def _skeleton(rendered: str, marks: list[str]) -> list[str] | None:
    """Split a placeholder render into the literal text around each placeholder (in order)."""
    parts: list[str] = []
    rest = rendered
    for mark in marks:
        if rest.count(mark) != 1:
            return None
        before, _, rest = rest.partition(mark)
        parts.append(before)
    parts.append(rest)
    return parts


@dataclass
class Prompt:
    text: str                         # rendered prompt text
    images: list[str] = field(default_factory=list)
    tokens: list[int] | None = None   # set when the prompt had to be cut (send ids, not text)


def compile_template(source: str) -> Template:
    """Parsed once per distinct source (a model's template is the same on every request; a
    parsed Template is never changed by rendering, see gotemplate.Template.render)."""
    if len(source) > MAX_CACHED_TEMPLATE:
        return parse_or_reject(source)
    hit = cached_template(source)
    if hit is not None:
        return hit
    tmpl = parse_or_reject(source)
    with _cache_lock:
        _cache[source] = tmpl
        while len(_cache) > MAX_CACHED_TEMPLATES:
            _cache.popitem(last=False)
    return tmpl


def cached_template(source: str) -> Template | None:
    """The parsed template if it is in the cache (cheap: what may run on the event loop)."""
    with _cache_lock:
        tmpl = _cache.get(source)
        if tmpl is not None:
            _cache.move_to_end(source)
        return tmpl


async def compile_template_off_loop(source: str) -> Template:
    """`compile_template` for the event loop: a parse costs up to ~2 µs a byte (a 60 KB model
    template ~120 ms, a 20 MB request `template` seconds), so a miss runs in a worker thread."""
    hit = cached_template(source)
    return hit if hit is not None else await asyncio.to_thread(compile_template, source)


MAX_CACHED_TEMPLATE = 64 * 1024  # 64 entries: at most 4 MiB held
MAX_CACHED_TEMPLATES = 64
_cache: OrderedDict[str, Template] = OrderedDict()
_cache_lock = threading.Lock()


# ------------------------------------------------------------------ Go-template data


def go_tool(t: Tool) -> JsonObject:
    """Tool in Ollama's Go struct field order (what {{ .Tools }} prints as JSON)."""
    params = dict(t.function.parameters)
    p: JsonObject = {"type": params.get("type", "")}
    for key in ("$defs", "items", "required"):
        if params.get(key):
            p[key] = params[key]
    p["properties"] = params.get("properties") or {}
    fn: JsonObject = {"name": t.function.name}
    if t.function.description:
        fn["description"] = t.function.description
    fn["parameters"] = p
    out: JsonObject = {"type": t.type}
    if t.items is not None:
        out["items"] = t.items
    out["function"] = fn
    return out


def go_message(m: Message) -> JsonObject:
    d: JsonObject = {"Role": m.role, "Content": m.content, "Thinking": m.thinking or "",
                         "Images": list(m.images or []), "ToolName": m.tool_name or "",
                         "ToolCallID": m.tool_call_id or ""}
    calls = []
    for i, c in enumerate(m.tool_calls or []):
        fn = {"index": c.function.index if c.function.index is not None else i,
              "name": c.function.name, "arguments": c.function.arguments}
        calls.append(wrap_json({"id": c.id or "", "function": fn}))
    d["ToolCalls"] = calls
    return d


def collate(msgs: Sequence[Message]) -> tuple[str, list[JsonObject]]:
    """System text (all system messages joined) and messages with consecutive same-role
    messages merged by a blank line (tool messages stay separate)."""
    system: list[str] = []
    out: list[JsonObject] = []
    for m in msgs:
        if m.role == "system":
            system.append(m.content)
        if out and out[-1]["Role"] == m.role and m.role != "tool":
            out[-1]["Content"] += "\n\n" + m.content
        else:
            out.append(go_message(m))
    return "\n\n".join(system), out


def render_go(tmpl: Template, msgs: Sequence[Message], tools: Sequence[Tool] | None,
              think: bool | str | None) -> str:
    """Ollama's template.Execute: messages mode, or legacy per-turn mode cut at .Response."""
    think_on = bool(think)
    level = think if isinstance(think, str) else ""
    system, messages = collate(msgs)
    common = {"Think": think_on, "ThinkLevel": level, "IsThinkSet": think is not None}
    try:
        if "messages" in tmpl.vars or "document" in tmpl.vars:
            return tmpl.render({"System": system, "Messages": messages,
                                "Tools": JsonList(wrap_json([go_tool(t) for t in tools or []])),
                                "Response": "", **common})
        out: list[str] = []
        sys_text = prompt = response = ""

        def execute() -> None:
            nonlocal sys_text, prompt, response
            out.append(tmpl.render({"System": sys_text, "Prompt": prompt,
                                    "Response": response, **common}))
            sys_text = prompt = response = ""

        for m in messages:
            role = m["Role"]
            if role == "system":
                if prompt or response:
                    execute()
                sys_text = m["Content"]
            elif role == "user":
                if response:
                    execute()
                prompt = m["Content"]
            elif role == "assistant":
                response = m["Content"]
        out.append(tmpl.render({"System": sys_text, "Prompt": prompt, "Response": response,
                                **common}, tmpl.until_response()))
        return "".join(out)
    except TemplateError as e:
        raise BadRequest(f"template error: {e}") from None


def render_fim(tmpl: Template, prompt: str, suffix: str, think: bool | str | None) -> str:
    try:
        return tmpl.render({"Prompt": prompt, "Suffix": suffix, "Response": "",
                            "Think": bool(think), "IsThinkSet": think is not None})
    except TemplateError as e:
        raise BadRequest(f"template error: {e}") from None


# ------------------------------------------------------------------ Jinja (llama-server)


def openai_message(m: Message) -> JsonObject:
    d: JsonObject = {"role": m.role, "content": m.content}
    if m.tool_calls:
        d["tool_calls"] = [{"type": "function", "id": c.id or f"call_{i}",
                            "function": {"name": c.function.name,
                                         "arguments": c.function.arguments}}
                           for i, c in enumerate(m.tool_calls)]
    if m.thinking:
        d["reasoning_content"] = m.thinking
    if m.role == "tool":
        if m.tool_name:
            d["name"] = m.tool_name
        if m.tool_call_id:
            d["tool_call_id"] = m.tool_call_id
    return d


def openai_tool(t: Tool) -> JsonObject:
    fn: JsonObject = {"name": t.function.name, "parameters": t.function.parameters}
    if t.function.description:
        fn["description"] = t.function.description
    return {"type": "function", "function": fn}


# ------------------------------------------------------------------ fitting


def tag_images(msgs: Sequence[Message], mark: bool = True) -> tuple[list[Message], list[str]]:
    """[img-N] markers into the content (replacing "[img]" if present), images in order.
    `mark` False: images only (a family renderer places the media marker itself)."""
    images: list[str] = []
    out: list[Message] = []
    for m in msgs:
        if not m.images or not mark:
            out.append(m)
            images.extend(m.images or ())
            continue
        content = m.content
        prefix = ""
        for img in m.images:
            tag = f"[img-{len(images)}]"
            if "[img]" in content:
                content = content.replace("[img]", tag, 1)
            else:
                prefix += tag
            images.append(img)
        out.append(m.model_copy(update={"content": prefix + content}))
    return out, images


def strip_old_thinking(msgs: list[Message], family: str) -> list[Message]:
    """qwen3 / deepseek-r1: drop <think> blocks of assistant turns before the last user turn."""
    if not any(f in family for f in _THINK_STRIP_FAMILIES):
        return msgs
    last_user = max((i for i, m in enumerate(msgs) if m.role == "user"), default=-1)
    return [m.model_copy(update={"content": strip_think_blocks(m.content)})
            if i < last_user and m.role == "assistant" else m for i, m in enumerate(msgs)]


def strip_think_blocks(text: str) -> str:
    """`<think>...</think>` blocks removed (leftmost open tag, nearest close tag), in one linear
    pass: the regex `<think>.*?</think>` rescans to the end for every unclosed `<think>`, which
    on a megabyte of them holds the event loop for minutes."""
    out: list[str] = []
    i = 0
    while True:
        start = text.find(_THINK_OPEN, i)
        if start < 0:
            break
        end = text.find(_THINK_CLOSE, start + len(_THINK_OPEN))
        if end < 0:
            break
        out.append(text[i:start])
        i = end + len(_THINK_CLOSE)
    if not out:
        return text
    out.append(text[i:])
    return "".join(out)


def _plain(m: Message) -> bool:
    return (m.role in ("system", "user", "assistant") and bool(m.content) and not m.images
            and not m.tool_calls and not m.thinking and not m.tool_name and not m.tool_call_id)


async def _render(r: Renderer, msgs: list[Message], tools: Sequence[Tool] | None,
                  think: bool | str | None) -> str:
    if r.family is not None:
        # off the loop too: a family renderer is O(request) Python (~150 ms for a 12 MB chat)
        return await asyncio.to_thread(r.family.render, msgs, tools, think)
    if r.template is not None:
        # off the loop: a render is bounded (template Limits) but may take a while
        return await isolate.render(render_go, r.template, msgs, tools, think)
    if (r.skeleton_key and not tools and content_is_opaque(r.jinja_source)
            and all(_plain(m) for m in msgs)):
        # one /apply-template round trip per conversation shape, not per request
        key = (r.skeleton_key, tuple(m.role for m in msgs), think)
        if key in _SKELETONS:
            _SKELETONS.move_to_end(key)
            parts = _SKELETONS[key]
        else:
            marks = [f" \x02{i}\x03 " for i in range(len(msgs))]
            rendered = await r.apply_template(
                [{"role": m.role, "content": marks[i]} for i, m in enumerate(msgs)], None,
                think)
            parts = _skeleton(rendered, marks)
            _SKELETONS[key] = parts
            while len(_SKELETONS) > MAX_SKELETONS:
                _SKELETONS.popitem(last=False)
        if parts is not None:
            out = [parts[0]]
            for m, tail in zip(msgs, parts[1:], strict=True):
                out.append(m.content)
                out.append(tail)
            return "".join(out)
    return await r.apply_template([openai_message(m) for m in msgs],
                                  [openai_tool(t) for t in tools] if tools else None, think)


def _cheap_fits(text: str, images: int, num_ctx: int) -> bool:
    # A token covers at least one byte, so byte length (+ BOS/EOS) bounds the token count.
    return len(text.encode()) + 2 + images <= num_ctx


async def fit_messages(r: Renderer, msgs: list[Message], tools: Sequence[Tool] | None,
                       think: bool | str | None, num_ctx: int, truncate: bool) -> Prompt:
    """Render the most recent messages that fit in num_ctx (Ollama's chatPrompt)."""
    if not msgs:
        raise BadRequest("no messages to render")

    def img_cost(sub: list[Message]) -> int:
        return IMAGE_TOKENS * sum(len(m.images or []) for m in sub) if r.has_projector else 0

    async def candidate(i: int) -> tuple[str, int]:
        systems = [m for m in msgs[:i] if m.role == "system"]
        sub = systems + msgs[i:]
        tagged, _ = tag_images(sub, r.family is None)
        return await _render(r, tagged, tools, think), img_cost(msgs[i:])

    text, imgs = await candidate(0)
    start = 0
    if truncate and not _cheap_fits(text, imgs, num_ctx) and len(msgs) > 1:
        n_tokens = len(await r.tokenize(text, False)) + imgs
        if n_tokens > num_ctx:
            # The oldest start whose suffix still fits (the last message is always kept).
            # Ollama walks back one message at a time, a render and a tokenize per step; a
            # suffix only grows as the start moves back, so bisecting finds the same start in
            # log2(n) steps: with a GGUF (Jinja) template each step is two round trips to
            # llama-server, and 1,000 short messages took 55 s to walk.
            lo, start = 1, len(msgs) - 1
            while lo < start:
                mid = (lo + start) // 2
                t, c = await candidate(mid)
                if len(await r.tokenize(t, False)) + c > num_ctx:
                    lo = mid + 1
                else:
                    start = mid
            text, imgs = await candidate(start)
    systems = [m for m in msgs[:start] if m.role == "system"]
    _, images = tag_images(systems + msgs[start:], r.family is None)
    return Prompt(text=text, images=images)


def context_shift_limit(num_ctx: int, num_keep: int) -> int:
    """Tokens a cut prompt keeps: num_keep, then about half of the rest of the context is freed
    before generation needs it (Ollama's contextShiftPromptLimit)."""
    if num_ctx <= 1:
        return 0
    num_keep = max(0, min(num_keep, num_ctx - 1))
    return num_ctx - max((num_ctx - num_keep) // 2, 1)


def context_shift_cut(tokens: list[int], num_ctx: int, num_keep: int,
                      adds_bos: bool) -> list[int]:
    """The prompt's first num_keep tokens (+ the BOS the tokenizer added; num_keep < 0: all
    that fit) and its last ones, `context_shift_limit` in all (Ollama's llama-server runner)."""
    keep = len(tokens) if num_keep < 0 else num_keep
    if adds_bos:
        keep += 1
    keep = min(keep, num_ctx - 1)
    limit = context_shift_limit(num_ctx, keep)
    discard = len(tokens) - limit
    return tokens[:keep] + tokens[keep + discard:]


async def shift_fit(r: Renderer, p: Prompt, num_ctx: int, num_keep: int, truncate: bool,
                    shift: bool) -> Prompt:
    """A prompt still longer than num_ctx - 1 tokens after the history was dropped, as Ollama's
    runner handles it: sent as is when `truncate` is off (the runner refuses it), a 400 with
    Ollama's message when context shift is off, else cut in the middle (keeping num_keep).
    Prompts with images are never cut (the runner decides)."""
    if p.images or num_ctx <= 1 or _cheap_fits(p.text, 0, num_ctx - 1):
        return p
    tokens = await r.tokenize(p.text, True)
    if len(tokens) <= num_ctx - 1 or not truncate:
        return p
    if not shift:
        raise BadRequest(CONTEXT_ERROR)
    adds_bos = bool(await r.tokenize("", True))
    return Prompt(text=p.text, images=p.images,
                  tokens=context_shift_cut(tokens, num_ctx, num_keep, adds_bos))
