"""llama-server `/completion` SSE events -> Ollama NDJSON chunks / OpenAI SSE chunks.

Per event, never buffered: each upstream event becomes at most one chunk, written and flushed
before the next event is read (only text that may be the start of a tool-call or thinking tag is
held back, as Ollama does). Everything here is pure and unit-tested with fake events; the route
handlers only wire it to sockets.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ollamapy.template.thinking import ThinkingParser
from ollamapy.template.tools import ToolCall, ToolParser

FLUSH: dict[str, Any] = {}
"""Sentinel chunk: the events before it arrived in one upstream read and may go out in one write
(it never delays anything: it is emitted as soon as that read has been processed)."""

_clock: list[Any] = [-1, ""]


def now_rfc3339() -> str:
    """Go's time.Time JSON form in UTC (microsecond precision), cheap enough to stamp every
    chunk: the date-time part is formatted once per second."""
    ns = time.time_ns()
    sec = ns // 1_000_000_000
    if sec != _clock[0]:
        _clock[0] = sec
        _clock[1] = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_clock[1]}.{(ns // 1000) % 1_000_000:06d}Z"


def done_reason(final: dict[str, Any]) -> str:
    """llama-server stop_type -> Ollama done_reason."""
    if final.get("stop_type") == "limit" or final.get("truncated"):
        return "length"
    return "stop"


def metrics(final: dict[str, Any], start_ns: int, load_s: float) -> dict[str, int]:
    """Timings -> Ollama's integer-nanosecond metrics (zero values omitted, as Go's omitempty).

    prompt_eval_count includes cached prompt tokens (cache_n + prompt_n)."""
    t = final.get("timings") or {}
    out = {
        "total_duration": time.monotonic_ns() - start_ns,
        "load_duration": int(load_s * 1e9),
        "prompt_eval_count": int(t.get("cache_n", 0) or 0) + int(t.get("prompt_n", 0) or 0),
        "prompt_eval_duration": int(float(t.get("prompt_ms", 0) or 0) * 1e6),
        "eval_count": int(t.get("predicted_n", final.get("tokens_predicted", 0)) or 0),
        "eval_duration": int(float(t.get("predicted_ms", 0) or 0) * 1e6),
    }
    return {k: v for k, v in out.items() if v > 0}


@dataclass
class Step:
    """What one upstream event contributes to the client's stream."""

    content: str = ""
    thinking: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    final: dict[str, Any] | None = None
    flush: bool = False
    logprobs: list[dict[str, Any]] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.content or self.thinking or self.tool_calls or self.logprobs
                    or self.final is not None)


def _prob(p: dict[str, Any]) -> dict[str, Any]:
    return {"token": p.get("token", ""), "logprob": float(p.get("logprob", 0.0)),
            "bytes": p.get("bytes") or []}


def logprobs(probs: Any, top: int) -> list[dict[str, Any]]:
    """llama-server completion_probabilities -> Ollama logprobs (top_logprobs only if asked)."""
    out = []
    for p in probs or []:
        item = _prob(p)
        if top > 0:
            item["top_logprobs"] = [_prob(t) for t in (p.get("top_logprobs") or [])[:top]]
        out.append(item)
    return out


@dataclass
class OutputParser:
    """Thinking split, then tool-call extraction, applied to the model's text as it streams."""

    thinking: ThinkingParser | None = None
    tools: ToolParser | None = None

    def feed(self, text: str) -> Step:
        step = Step()
        if self.thinking is not None:
            step.thinking, text = self.thinking.add(text)
        if self.tools is not None and text:
            text, step.tool_calls = self.tools.add(text)
        step.content = text
        return step

    def finish(self) -> Step:
        step = Step()
        text = ""
        if self.thinking is not None:
            step.thinking, text = self.thinking.finish()
        if self.tools is not None:
            if text:
                text, step.tool_calls = self.tools.add(text)
            text += self.tools.finish()
        step.content = text
        return step


async def steps(events: AsyncGenerator[dict[str, Any], None], parser: OutputParser,
                top_logprobs: int | None = None) -> AsyncGenerator[Step, None]:
    """Upstream events -> steps; the last step carries the final event. `top_logprobs` not
    None: per-token log probabilities are passed on. Closing this closes the upstream."""
    async with contextlib.aclosing(events):
        async for step in _steps(events, parser, top_logprobs):
            yield step


async def _steps(events: AsyncIterator[dict[str, Any]], parser: OutputParser,
                 top_logprobs: int | None) -> AsyncGenerator[Step, None]:
    async for ev in events:
        if ev is FLUSH:
            yield Step(flush=True)
            continue
        if ev.get("stop"):
            more = parser.feed(ev["content"]) if ev.get("content") else Step()
            tail = parser.finish()
            last = Step(more.content + tail.content, more.thinking + tail.thinking,
                        more.tool_calls + tail.tool_calls)
            last.final = ev
            last.tokens = list(ev.get("tokens") or [])
            yield last
            return
        s = parser.feed(ev.get("content", ""))
        s.tokens = ev.get("tokens") or []
        if top_logprobs is not None:
            s.logprobs = logprobs(ev.get("completion_probabilities"), top_logprobs)
        if not s.empty():
            yield s
        elif s.tokens:
            yield s  # nothing to show yet, but the token ids count for `context`


# ------------------------------------------------------------------ Ollama chunks


def generate_chunk(model: str, step: Step) -> dict[str, Any]:
    c: dict[str, Any] = {"model": model, "created_at": now_rfc3339(), "response": step.content,
                         "done": False}
    if step.thinking:
        c["thinking"] = step.thinking
    if step.tool_calls:
        c["tool_calls"] = [t.ollama() for t in step.tool_calls]
    if step.logprobs:
        c["logprobs"] = step.logprobs
    return c


def chat_chunk(model: str, step: Step) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": step.content}
    if step.thinking:
        msg["thinking"] = step.thinking
    if step.tool_calls:
        msg["tool_calls"] = [t.ollama() for t in step.tool_calls]
    c = {"model": model, "created_at": now_rfc3339(), "message": msg, "done": False}
    if step.logprobs:
        c["logprobs"] = step.logprobs
    return c


def finish_chunk(chunk: dict[str, Any], final: dict[str, Any], start_ns: int,
                 load_s: float) -> dict[str, Any]:
    chunk["done"] = True
    chunk["done_reason"] = done_reason(final)
    chunk.update(metrics(final, start_ns, load_s))
    return chunk


class Aggregate:
    """Non-streaming answer: pieces concatenated, metrics from the last chunk."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.thinking: list[str] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.logprobs: list[dict[str, Any]] = []
        self.last: dict[str, Any] | None = None

    def add(self, chunk: dict[str, Any]) -> None:
        if chunk is FLUSH:
            return
        src = chunk.get("message", chunk)
        text = src.get("content") if "message" in chunk else chunk.get("response")
        if text:
            self.content.append(text)
        if src.get("thinking"):
            self.thinking.append(src["thinking"])
        if src.get("tool_calls"):
            self.tool_calls.extend(src["tool_calls"])
        if chunk.get("logprobs"):
            self.logprobs.extend(chunk["logprobs"])
        self.last = chunk

    def result(self) -> dict[str, Any]:
        assert self.last is not None
        out = dict(self.last)
        if self.logprobs:
            out["logprobs"] = self.logprobs
        text = "".join(self.content)
        thinking = "".join(self.thinking)
        if "message" in out:
            msg: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                msg["thinking"] = thinking
            if self.tool_calls:
                msg["tool_calls"] = self.tool_calls
            out["message"] = msg
        else:
            out["response"] = text
            if thinking:
                out["thinking"] = thinking
            elif "thinking" in out:
                del out["thinking"]
            if self.tool_calls:
                out["tool_calls"] = self.tool_calls
        return out


def ndjson(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def sse(obj: dict[str, Any] | str) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False,
                                                        separators=(",", ":"))
    return b"data: " + data.encode() + b"\n\n"


# ------------------------------------------------------------------ OpenAI chunks


def finish_reason(chunk: dict[str, Any], had_tool_calls: bool) -> str | None:
    reason = chunk.get("done_reason")
    if reason is None or not chunk.get("done"):
        return None
    if had_tool_calls:  # as Ollama: whatever ended the turn, it produced tool calls
        return "tool_calls"
    return reason if reason in ("stop", "length") else "stop"


def openai_tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, c in enumerate(calls):
        fn = c["function"]
        out.append({"id": c.get("id") or f"call_{i}", "index": fn.get("index", i),
                    "type": "function",
                    "function": {"name": fn["name"],
                                 "arguments": json.dumps(fn.get("arguments", {}),
                                                         ensure_ascii=False)}})
    return out


def usage(chunk: dict[str, Any]) -> dict[str, int]:
    p = int(chunk.get("prompt_eval_count", 0))
    c = int(chunk.get("eval_count", 0))
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


class OpenAIChatStream:
    """Ollama chat chunks -> `chat.completion.chunk` objects (first delta carries the role;
    reasoning and content go in separate chunks; a separate empty-delta finish chunk; optional
    usage chunk with `choices: []`)."""

    def __init__(self, cid: str, model: str, include_usage: bool) -> None:
        self.id = cid
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage
        self.first = True
        self.had_tools = False

    def _chunk(self, delta: dict[str, Any], reason: str | None) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "system_fingerprint": "fp_ollama",
                "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}

    def convert(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        msg = chunk.get("message", {})
        out: list[dict[str, Any]] = []
        deltas: list[dict[str, Any]] = []
        if msg.get("thinking"):
            deltas.append({"reasoning": msg["thinking"]})
        if msg.get("tool_calls"):
            self.had_tools = True
            deltas.append({"tool_calls": openai_tool_calls(msg["tool_calls"])})
        if msg.get("content") or (not deltas and not chunk.get("done")):
            deltas.append({"content": msg.get("content", "")})
        for d in deltas:
            if self.first:
                d = {"role": "assistant", **d}
                self.first = False
            out.append(self._chunk(d, None))
        if chunk.get("logprobs") and out:
            out[-1]["choices"][0]["logprobs"] = {"content": chunk["logprobs"]}
        if chunk.get("done"):
            if self.first:
                out.append(self._chunk({"role": "assistant", "content": ""}, None))
                self.first = False
            out.append(self._chunk({}, finish_reason(chunk, self.had_tools)))
            if self.include_usage:
                out.append({"id": self.id, "object": "chat.completion.chunk",
                            "created": self.created, "model": self.model,
                            "system_fingerprint": "fp_ollama", "choices": [],
                            "usage": usage(chunk)})
        return out


def openai_chat_response(cid: str, model: str, result: dict[str, Any]) -> dict[str, Any]:
    msg = result.get("message", {})
    out_msg: dict[str, Any] = {"role": "assistant", "content": msg.get("content", "")}
    if msg.get("thinking"):
        out_msg["reasoning"] = msg["thinking"]
    calls = msg.get("tool_calls") or []
    if calls:
        out_msg["tool_calls"] = openai_tool_calls(calls)
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_ollama",
            "choices": [{"index": 0, "message": out_msg,
                         "finish_reason": finish_reason(result, bool(calls)),
                         **({"logprobs": {"content": result["logprobs"]}}
                            if result.get("logprobs") else {})}],
            "usage": usage(result)}


class OpenAICompletionStream:
    """Ollama generate chunks -> `text_completion` chunks (the last one carries finish_reason;
    with include_usage every chunk has a zero usage and a `choices: []` usage chunk follows)."""

    def __init__(self, cid: str, model: str, include_usage: bool) -> None:
        self.id = cid
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage

    def convert(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        c: dict[str, Any] = {"id": self.id, "object": "text_completion", "created": self.created,
                             "model": self.model, "system_fingerprint": "fp_ollama",
                             "choices": [_completion_choice(chunk)]}
        if self.include_usage:
            c["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        out = [c]
        if chunk.get("done") and self.include_usage:
            out.append({"id": self.id, "object": "text_completion", "created": self.created,
                        "model": self.model, "system_fingerprint": "fp_ollama", "choices": [],
                        "usage": usage(chunk)})
        return out


def openai_completion_response(cid: str, model: str, result: dict[str, Any]) -> dict[str, Any]:
    return {"id": cid, "object": "text_completion", "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_ollama",
            "choices": [_completion_choice(result)], "usage": usage(result)}


def _completion_choice(chunk: dict[str, Any]) -> dict[str, Any]:
    choice: dict[str, Any] = {"text": chunk.get("response", ""), "index": 0,
                              "finish_reason": finish_reason(chunk, False)}
    if chunk.get("logprobs"):
        choice["logprobs"] = {"content": chunk["logprobs"]}
    return choice
