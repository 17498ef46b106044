"""Wire types of the OpenAI-compatible API and their translation into native requests
(Ollama's openai middleware: temperature/top_p default 1.0, max_tokens -> num_predict,
response_format -> format, reasoning_effort -> think, content parts -> messages)."""

from __future__ import annotations

import json
import random
from typing import Any

from pydantic import Field

from ollamapy.api.inference import (
    ChatRequest,
    GenerateRequest,
    Message,
    Tool,
    ToolCall,
    ToolCallFunction,
    Wire,
)
from ollamapy.errors import BadRequest
from ollamapy.inference.jsontypes import JsonObject

EFFORT: dict[str, bool | str] = {
    "none": False, "minimal": "low", "low": "low", "medium": "medium", "high": "high",
    "max": "max", "xhigh": "max", "ultra": "max"}


class StreamOptions(Wire):
    include_usage: bool = False


class OAIFunctionCall(Wire):
    name: str
    arguments: str = ""


class OAIToolCall(Wire):
    id: str | None = None
    type: str = "function"
    function: OAIFunctionCall


class OAIMessage(Wire):
    role: str
    content: str | list[JsonObject] | None = None
    name: str | None = None
    tool_calls: list[OAIToolCall] | None = None
    tool_call_id: str | None = None
    reasoning: str | None = None


class Reasoning(Wire):
    effort: str | None = None


class ChatCompletionRequest(Wire):
    model: str = ""
    messages: list[OAIMessage] = Field(default_factory=list)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    response_format: JsonObject | None = None
    tools: list[Tool] | None = None
    reasoning_effort: str | None = None
    reasoning: Reasoning | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class CompletionRequest(Wire):
    model: str = ""
    prompt: str = ""
    suffix: str = ""
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: int | None = None


class EmbeddingRequest(Wire):
    model: str = ""
    input: Any = None
    encoding_format: str | None = None
    dimensions: int | None = None


def chat_id() -> str:
    return f"chatcmpl-{random.randrange(999)}"


def completion_id() -> str:
    return f"cmpl-{random.randrange(999)}"


def _stop(stop: str | list[str] | None) -> list[str] | None:
    if stop is None:
        return None
    return [stop] if isinstance(stop, str) else list(stop)


def _image(url: Any) -> str:
    if isinstance(url, dict):
        url = url.get("url")
    if not isinstance(url, str):
        raise BadRequest("invalid image input")
    if url.startswith(("http://", "https://")):
        raise BadRequest("image URLs are not currently supported, please use base64 encoded "
                         "data instead")
    head, sep, data = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise BadRequest("invalid image input")
    mime = head[5:-7]
    if mime not in ("", "image/jpeg", "image/jpg", "image/png", "image/webp"):
        raise BadRequest("invalid image input")
    return data


def to_messages(msgs: list[OAIMessage]) -> list[Message]:
    out: list[Message] = []
    names_by_id: dict[str, str] = {}
    for m in msgs:
        calls: list[ToolCall] | None = None
        if m.tool_calls:
            calls = []
            for i, c in enumerate(m.tool_calls):
                try:
                    args = json.loads(c.function.arguments) if c.function.arguments else {}
                except ValueError:
                    raise BadRequest("invalid tool call arguments") from None
                if not isinstance(args, dict):
                    raise BadRequest("invalid tool call arguments")
                if c.id:
                    names_by_id[c.id] = c.function.name
                calls.append(ToolCall(id=c.id, function=ToolCallFunction(
                    index=i, name=c.function.name, arguments=args)))
        tool_name = None
        if m.role == "tool":
            tool_name = m.name or names_by_id.get(m.tool_call_id or "")
        if m.content is None:
            if not calls:
                raise BadRequest(f"invalid message content type: {m.role} message needs content")
            out.append(Message(role=m.role, content="", tool_calls=calls,
                               thinking=m.reasoning))
            continue
        if isinstance(m.content, str):
            out.append(Message(role=m.role, content=m.content, tool_calls=calls,
                               thinking=m.reasoning, tool_name=tool_name,
                               tool_call_id=m.tool_call_id))
            continue
        for part in m.content:
            kind = part.get("type")
            if kind == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise BadRequest("invalid message format")
                out.append(Message(role=m.role, content=text, tool_name=tool_name))
            elif kind == "image_url":
                out.append(Message(role=m.role, content="",
                                   images=[_image(part.get("image_url"))]))
            else:
                raise BadRequest(f"invalid message format: unsupported content part {kind!r}")
        if calls:
            out.append(Message(role=m.role, content="", tool_calls=calls))
    return out


def _think(req: ChatCompletionRequest) -> bool | str | None:
    effort = req.reasoning_effort or (req.reasoning.effort if req.reasoning else None)
    if effort is None:
        return None
    if effort not in EFFORT:
        raise BadRequest(f"invalid reasoning value: '{effort}' (must be \"high\", \"medium\", "
                         "\"low\", \"max\", or \"none\")")
    return EFFORT[effort]


def _format(rf: JsonObject | None) -> Any:
    if not rf:
        return None
    kind = rf.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        wrapper = rf.get("json_schema")
        schema = wrapper.get("schema") if isinstance(wrapper, dict) else None
        if not isinstance(schema, dict):
            raise BadRequest("invalid response_format: json_schema.schema must be an object")
        return schema
    if kind in (None, "text"):
        return None
    raise BadRequest(f"invalid response_format type: {kind!r}")


def to_chat(req: ChatCompletionRequest) -> ChatRequest:
    if not req.messages:
        raise BadRequest("[] is too short - 'messages'")
    opts: JsonObject = {
        "temperature": 1.0 if req.temperature is None else req.temperature,
        "top_p": 1.0 if req.top_p is None else req.top_p,
    }
    n = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    if n is not None:
        opts["num_predict"] = n
    if req.seed is not None:
        opts["seed"] = req.seed
    if req.stop is not None:
        opts["stop"] = _stop(req.stop)
    if req.frequency_penalty is not None:
        opts["frequency_penalty"] = req.frequency_penalty
    if req.presence_penalty is not None:
        opts["presence_penalty"] = req.presence_penalty
    if req.top_logprobs is not None and not 0 <= req.top_logprobs <= 20:
        raise BadRequest("top_logprobs must be between 0 and 20")
    return ChatRequest(model=req.model, messages=to_messages(req.messages), stream=req.stream,
                       options=opts, format=_format(req.response_format), tools=req.tools,
                       think=_think(req), logprobs=req.logprobs,
                       top_logprobs=req.top_logprobs)


def to_generate(req: CompletionRequest) -> GenerateRequest:
    opts: JsonObject = {
        "temperature": 1.0 if req.temperature is None else req.temperature,
        "top_p": 1.0 if not req.top_p else req.top_p,
        "frequency_penalty": req.frequency_penalty,
        "presence_penalty": req.presence_penalty,
    }
    if req.max_tokens is not None:
        opts["num_predict"] = req.max_tokens
    if req.seed is not None:
        opts["seed"] = req.seed
    if req.stop is not None:
        opts["stop"] = _stop(req.stop)
    # `logprobs: N` (N > 0) = log probabilities with the N most likely alternatives
    top = req.logprobs if req.logprobs is not None and req.logprobs > 0 else None
    if top is not None and top > 20:
        raise BadRequest("top_logprobs must be between 0 and 20")
    return GenerateRequest(model=req.model, prompt=req.prompt, suffix=req.suffix,
                           stream=req.stream, options=opts, logprobs=top is not None or None,
                           top_logprobs=top)


def embedding_inputs(req: EmbeddingRequest) -> list[str]:
    v = req.input
    if v == "":
        return [""]
    if isinstance(v, str):
        return [v]
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
        return list(v)
    raise BadRequest("invalid input")
