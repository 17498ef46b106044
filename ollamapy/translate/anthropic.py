"""Anthropic Messages <-> the engine: request translation, the SSE event sequence, the
non-streaming message object (Ollama's anthropic package is the reference for the mapping;
Anthropic's streaming docs for the event order: message_start, then per content block
content_block_start / content_block_delta... / content_block_stop with one `ping` after the
first block start, then message_delta (stop_reason, usage) and message_stop)."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import Any

from ollamapy import jsoncodec
from ollamapy.api.anthropic import (
    ContentBlock,
    CountTokensRequest,
    MessageParam,
    MessagesRequest,
    StopReason,
    anthropic_error_body,
)
from ollamapy.api.inference import Message, Think, Tool, ToolCall, ToolCallFunction, ToolFunction
from ollamapy.errors import BadRequest, OllamaError, PromptTooLong
from ollamapy.inference.events import Done, Event, TextDelta, ThinkingDelta, ToolCallEvent
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.inference.request import InferenceRequest
from ollamapy.translate.forced import call_schema
from ollamapy.translate.turn import Turn

THINK_EFFORTS = ("low", "medium", "high", "max")
SSEEvent = tuple[str, JsonObject]


def message_id() -> str:
    return "msg_" + secrets.token_hex(12)


# ------------------------------------------------------------------ request


def _image(block: ContentBlock | JsonObject) -> str:
    src: Any = block.get("source") if isinstance(block, dict) else (
        block.source.model_dump() if block.source is not None else None)
    if not isinstance(src, dict):
        raise BadRequest("invalid image source")
    if src.get("type") != "base64":
        raise BadRequest(f"invalid image source type: {src.get('type')}. Only base64 images "
                         "are supported.")
    data = src.get("data")
    if not isinstance(data, str):
        raise BadRequest("invalid base64 image data")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("invalid base64 image data") from None
    return data


def _tool_result(block: ContentBlock) -> tuple[str, list[str]]:
    """tool_result content (a string or text/image blocks) -> text and images."""
    c = block.content
    images: list[str] = []
    if c is None:
        text = ""
    elif isinstance(c, str):
        text = c
    else:
        parts: list[str] = []
        for item in c:
            kind = item.get("type")
            if kind == "text" and isinstance(item.get("text"), str):
                parts.append(item["text"])
            elif kind == "image":
                images.append(_image(item))
        text = "".join(parts)
    if block.is_error:
        text = "Error: " + text
    return text, images


def _message(msg: MessageParam, names: dict[str, str]) -> list[Message]:
    """One Anthropic message -> native messages. A user turn's tool_result blocks become `tool`
    messages placed before its own text (the order the model answered them in)."""
    blocks = ([ContentBlock(type="text", text=msg.content)] if isinstance(msg.content, str)
              else msg.content)
    text: list[str] = []
    images: list[str] = []
    calls: list[ToolCall] = []
    thinking = ""
    results: list[Message] = []
    for b in blocks:
        if b.type == "text":
            text.append(b.text or "")
        elif b.type == "image":
            images.append(_image(b))
        elif b.type == "tool_use":
            if not b.id:
                raise BadRequest("tool_use block missing required 'id' field")
            if not b.name:
                raise BadRequest("tool_use block missing required 'name' field")
            names[b.id] = b.name
            calls.append(ToolCall(id=b.id, function=ToolCallFunction(
                index=len(calls), name=b.name, arguments=b.input or {})))
        elif b.type == "tool_result":
            if not b.tool_use_id:
                raise BadRequest("tool_result block missing required 'tool_use_id' field")
            content, imgs = _tool_result(b)
            results.append(Message(role="tool", content=content, images=imgs or None,
                                   tool_call_id=b.tool_use_id,
                                   tool_name=names.get(b.tool_use_id)))
        elif b.type == "thinking":
            thinking += b.thinking or ""
        elif b.type != "redacted_thinking":  # that one is opaque: nothing the model can read
            raise BadRequest(f"content block type {b.type!r} is not supported")
    out = list(results)
    body = "".join(text)
    if body or images or calls or thinking:
        out.append(Message(role=msg.role, content=body, images=images or None,
                           tool_calls=calls or None, thinking=thinking or None))
    return out


def _system(system: str | list[ContentBlock] | None) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    return "\n\n".join(b.text for b in system if b.type == "text" and b.text)


def _tools(req: CountTokensRequest) -> list[Tool] | None:
    tools = []
    for t in req.tools or []:
        if t.type not in (None, "custom"):
            raise BadRequest(f"tool type {t.type!r} is not supported: ollamapy runs only "
                             "client tools (custom tools with an input_schema)")
        tools.append(Tool(type="function", function=ToolFunction(
            name=t.name, description=t.description, parameters=t.input_schema)))
    choice = req.tool_choice
    if choice is not None and choice.type == "none":
        return None
    if choice is not None and choice.type == "tool":
        tools = [t for t in tools if t.function.name == choice.name]
        if not tools:
            raise BadRequest(f"tool_choice names tool {choice.name!r}, which is not in tools")
    return tools or None


def _think(req: CountTokensRequest) -> Think:
    if req.thinking is not None:
        return req.thinking.type != "disabled"
    cfg = getattr(req, "output_config", None)
    effort = (cfg.effort or "").strip().lower() if cfg is not None else ""
    effort = "high" if effort == "xhigh" else effort
    return effort if effort in THINK_EFFORTS else None


def messages(req: CountTokensRequest) -> list[Message]:
    out: list[Message] = []
    system = _system(req.system)
    if system:
        out.append(Message(role="system", content=system))
    names: dict[str, str] = {}
    for m in req.messages:
        out.extend(_message(m, names))
    return out


def to_inference(req: MessagesRequest) -> InferenceRequest:
    if not req.model:
        raise BadRequest("model is required")
    if req.max_tokens is None or req.max_tokens <= 0:
        raise BadRequest("max_tokens is required and must be positive")
    if not req.messages:
        raise BadRequest("messages is required")
    opts: JsonObject = {"num_predict": req.max_tokens}
    if req.temperature is not None:
        opts["temperature"] = req.temperature
    if req.top_p is not None:
        opts["top_p"] = req.top_p
    if req.top_k is not None:
        opts["top_k"] = req.top_k
    if req.stop_sequences:
        opts["stop"] = list(req.stop_sequences)
    # truncate/shift off: an agent's conversation is never cut silently; too long -> 400
    tools = _tools(req)
    return InferenceRequest(model=req.model, messages=messages(req), tools=tools,
                            think=_think(req), options=opts, truncate=False, shift=False,
                            format=call_schema(tools) if tools and forced(req) else None)


def forced(req: CountTokensRequest) -> bool:
    """`tool_choice` `any` / `tool`: the answer must be a call (translate/forced.py)."""
    return req.tool_choice is not None and req.tool_choice.type in ("any", "tool")


def relax_think(think: Think, capabilities: tuple[str, ...]) -> Think:
    """Claude Code asks for thinking whatever the model: on a model without the capability the
    request runs without it (as Ollama relaxes it for this API) instead of failing with 400."""
    return None if think and "thinking" not in capabilities else think


def too_long(e: PromptTooLong) -> BadRequest:
    """Anthropic's wording for a prompt over the context (Claude Code parses it to compact)."""
    return BadRequest(f"prompt is too long: {e.tokens} tokens > {e.limit} maximum")


def count_request(req: CountTokensRequest) -> InferenceRequest:
    """What count_tokens renders: the same messages, system and tools as a real request."""
    if not req.model:
        raise BadRequest("model is required")
    if not req.messages:
        raise BadRequest("messages is required")
    return InferenceRequest(model=req.model, messages=messages(req), tools=_tools(req),
                            think=_think(req))


# ------------------------------------------------------------------ answer


def stop_reason(done: Done, had_tool_calls: bool,
                stop_sequences: list[str] | None) -> tuple[StopReason, str | None]:
    """(stop_reason, stop_sequence). Only a client's own stop sequence is `stop_sequence`; a
    model's end-of-turn stop string is a plain `end_turn`."""
    if had_tool_calls:
        return "tool_use", None
    if done.done_reason == "length":
        return "max_tokens", None
    if done.stop_sequence is not None and done.stop_sequence in (stop_sequences or ()):
        return "stop_sequence", done.stop_sequence
    return "end_turn", None


def usage(done: Done | None, input_hint: int = 0) -> dict[str, int]:
    return {"input_tokens": done.prompt_eval_count if done else input_hint,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "output_tokens": done.eval_count if done else 0}


def _tool_block(call: ToolCallEvent) -> JsonObject:
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}


def message_response(mid: str, model: str, turn: Turn,
                     stop_sequences: list[str] | None) -> JsonObject:
    """The non-streaming `message` object."""
    done = turn.done or Done()
    content: list[JsonObject] = []
    for b in turn.blocks:
        if b.kind == "text":
            content.append({"type": "text", "text": b.text})
        elif b.kind == "thinking":
            content.append({"type": "thinking", "thinking": b.text, "signature": ""})
        elif b.call is not None:
            content.append(_tool_block(b.call))
    reason, seq = stop_reason(done, bool(turn.tool_calls), stop_sequences)
    return {"id": mid, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": reason, "stop_sequence": seq,
            "usage": usage(done)}


class MessageStream:
    """Engine events -> Anthropic SSE events, one block open at a time. The first event of any
    kind sends message_start, so a route that waits for the first engine event before sending
    headers still answers early errors with a real status."""

    def __init__(self, mid: str, model: str, stop_sequences: list[str] | None = None,
                 input_hint: int = 0) -> None:
        self.mid, self.model, self.stops, self.input_hint = mid, model, stop_sequences, input_hint
        self.started = False
        self.pinged = False
        self.index = -1
        self.open: str | None = None  # "text" | "thinking" while a block is open
        self.tool_calls = 0
        self.finished = False

    def _start(self) -> list[SSEEvent]:
        if self.started:
            return []
        self.started = True
        msg: JsonObject = {
            "id": self.mid, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": usage(None, self.input_hint)}
        return [("message_start", {"type": "message_start", "message": msg})]

    def _close(self) -> list[SSEEvent]:
        if self.open is None:
            return []
        self.open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def _block(self, block: JsonObject) -> list[SSEEvent]:
        self.index += 1
        out: list[SSEEvent] = [("content_block_start", {
            "type": "content_block_start", "index": self.index, "content_block": block})]
        if not self.pinged:
            self.pinged = True
            out.append(("ping", {"type": "ping"}))
        return out

    def _delta(self, delta: JsonObject) -> SSEEvent:
        return ("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                        "delta": delta})

    def feed(self, ev: Event) -> list[SSEEvent]:
        if self.finished:
            return []
        out = self._start()
        if isinstance(ev, TextDelta | ThinkingDelta):
            if not ev.text:
                return out
            kind = "text" if isinstance(ev, TextDelta) else "thinking"
            if self.open != kind:
                out += self._close()
                self.open = kind
                out += self._block({"type": "text", "text": ""} if kind == "text" else
                                   {"type": "thinking", "thinking": "", "signature": ""})
            out.append(self._delta({"type": "text_delta", "text": ev.text} if kind == "text"
                                   else {"type": "thinking_delta", "thinking": ev.text}))
        elif isinstance(ev, ToolCallEvent):
            out += self._close()
            self.tool_calls += 1
            out += self._block({"type": "tool_use", "id": ev.id, "name": ev.name, "input": {}})
            out.append(self._delta({"type": "input_json_delta",
                                    "partial_json": json.dumps(ev.arguments)}))
            out.append(("content_block_stop", {"type": "content_block_stop",
                                               "index": self.index}))
        elif isinstance(ev, Done):
            out += self._close()
            if not self.pinged:
                self.pinged = True
                out.append(("ping", {"type": "ping"}))
            reason, seq = stop_reason(ev, self.tool_calls > 0, self.stops)
            u = usage(ev)
            out.append(("message_delta", {
                "type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": seq},
                "usage": {"input_tokens": u["input_tokens"],
                          "output_tokens": u["output_tokens"]}}))
            out.append(("message_stop", {"type": "message_stop"}))
            self.finished = True
        return out

    def error(self, e: OllamaError) -> list[SSEEvent]:
        """A failure after the stream started: Anthropic's `error` event (the SDK raises it)."""
        self.finished = True
        return [("error", anthropic_error_body(e.status, e.message))]


def sse_bytes(events: list[SSEEvent]) -> bytes:
    """`event:` and `data:` lines, one blank line after each event."""
    return b"".join(b"event: " + name.encode() + b"\ndata: " + jsoncodec.dumps(data) + b"\n\n"
                    for name, data in events)


def estimate_tokens(req: CountTokensRequest) -> int:
    """A cheap input-size hint (~4 bytes a token) for message_start, which is sent before the
    engine reports the real prompt count (message_delta carries the real one)."""
    n = len(_system(req.system))
    for m in req.messages:
        n += len(m.content) if isinstance(m.content, str) else sum(
            len(b.text or b.thinking or "") + len(json.dumps(b.input or {})) for b in m.content)
    for t in req.tools or []:
        n += len(t.name) + len(t.description or "") + len(json.dumps(t.input_schema))
    return max(1, n // 4) if req.messages else 0
