"""Engine events -> Ollama's `/api/generate` and `/api/chat` chunk objects (key order as
Ollama's structs), and the fold of a whole stream into one non-streamed answer."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from ollamapy.inference.events import (
    Done,
    Event,
    TextDelta,
    ThinkingDelta,
    TokenLogprob,
    ToolCallEvent,
)
from ollamapy.inference.jsontypes import JsonObject

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


def _prob(p: TokenLogprob) -> JsonObject:
    return {"token": p.token, "logprob": p.logprob, "bytes": p.bytes}


def logprobs_json(probs: list[TokenLogprob], with_top: bool) -> list[JsonObject]:
    out = []
    for p in probs:
        item = _prob(p)
        if with_top:
            item["top_logprobs"] = [_prob(t) for t in p.top]
        out.append(item)
    return out


def tool_call_json(e: ToolCallEvent) -> JsonObject:
    return {"id": e.id, "function": {"index": e.index, "name": e.name,
                                     "arguments": e.arguments}}


def metrics(d: Done) -> dict[str, int]:
    """Done's counts and durations, zero values omitted (Go's omitempty)."""
    out = {"total_duration": d.total_duration, "load_duration": d.load_duration,
           "prompt_eval_count": d.prompt_eval_count,
           "prompt_eval_duration": d.prompt_eval_duration, "eval_count": d.eval_count,
           "eval_duration": d.eval_duration}
    return {k: v for k, v in out.items() if v > 0}


class NativeChunks:
    """One request's events -> its chunks (`chat`: /api/chat shape, else /api/generate).
    `top_logprobs` > 0: each log probability lists its alternatives."""

    __slots__ = ("chat", "model", "top_logprobs", "with_top")

    def __init__(self, model: str, chat: bool, top_logprobs: int = 0) -> None:
        self.model = model
        self.chat = chat
        self.top_logprobs = top_logprobs
        self.with_top = top_logprobs > 0

    def chunk(self, ev: Event) -> JsonObject | None:
        """The chunk for one event (None: nothing to send, e.g. Flush)."""
        if isinstance(ev, TextDelta):
            c = self._base(ev.text)
            if ev.logprobs:
                c["logprobs"] = logprobs_json(ev.logprobs, self.with_top)
            return c
        if isinstance(ev, ThinkingDelta):
            return self._base("", thinking=ev.text)
        if isinstance(ev, ToolCallEvent):
            return self._base("", calls=[tool_call_json(ev)])
        if isinstance(ev, Done):
            return self.done(ev)
        return None

    def _base(self, text: str, thinking: str = "", calls: list[JsonObject] | None = None,
              done: bool = False) -> JsonObject:
        if self.chat:
            msg: JsonObject = {"role": "assistant", "content": text}
            if thinking:
                msg["thinking"] = thinking
            if calls:
                msg["tool_calls"] = calls
            return {"model": self.model, "created_at": now_rfc3339(), "message": msg,
                    "done": done}
        c: JsonObject = {"model": self.model, "created_at": now_rfc3339(), "response": text,
                         "done": done}
        if thinking:
            c["thinking"] = thinking
        if calls:
            c["tool_calls"] = calls
        return c

    def done(self, d: Done) -> JsonObject:
        if d.debug_rendered is not None:  # `_debug_render_only`
            c: JsonObject = {"model": self.model, "created_at": now_rfc3339()}
            if self.chat:
                c["message"] = {"role": "assistant", "content": ""}
            c["done"] = True
            c["_debug_info"] = {"rendered_template": d.debug_rendered,
                                "image_count": d.debug_image_count}
            return c
        c = self._base("", done=True)
        c["done_reason"] = d.done_reason
        c.update(metrics(d))
        if d.context is not None:
            c["context"] = d.context
        return c


class Aggregate:
    """Non-streaming answer: pieces concatenated, metrics from the last chunk."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.thinking: list[str] = []
        self.tool_calls: list[JsonObject] = []
        self.logprobs: list[JsonObject] = []
        self.last: JsonObject | None = None

    def add(self, chunk: JsonObject) -> None:
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

    def result(self) -> JsonObject:
        assert self.last is not None
        out = dict(self.last)
        if self.logprobs:
            out["logprobs"] = self.logprobs
        text = "".join(self.content)
        thinking = "".join(self.thinking)
        if "message" in out:
            msg: JsonObject = {"role": "assistant", "content": text}
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
