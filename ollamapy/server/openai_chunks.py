"""OpenAI `chat.completion(.chunk)` and `text_completion` objects, as Ollama's openai middleware
frames them: streamed chunks straight from engine events, whole answers from the aggregated
native answer (server/native_chunks.py)."""

from __future__ import annotations

import json
import time

from ollamapy.inference.events import Done, Event, TextDelta, ThinkingDelta, ToolCallEvent
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.server.native_chunks import logprobs_json, tool_call_json


def finish_reason(chunk: JsonObject, had_tool_calls: bool) -> str | None:
    reason = chunk.get("done_reason")
    if reason is None or not chunk.get("done"):
        return None
    if had_tool_calls:  # as Ollama: whatever ended the turn, it produced tool calls
        return "tool_calls"
    return reason if reason in ("stop", "length") else "stop"


def openai_tool_calls(calls: list[JsonObject]) -> list[JsonObject]:
    out = []
    for i, c in enumerate(calls):
        fn = c["function"]
        out.append({"id": c.get("id") or f"call_{i}", "index": fn.get("index", i),
                    "type": "function",
                    "function": {"name": fn["name"],
                                 "arguments": json.dumps(fn.get("arguments", {}),
                                                         ensure_ascii=False)}})
    return out


def usage(chunk: JsonObject) -> dict[str, int]:
    p = int(chunk.get("prompt_eval_count", 0))
    c = int(chunk.get("eval_count", 0))
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


class OpenAIChatStream:
    """Engine events -> `chat.completion.chunk` objects (first delta carries the role;
    reasoning, content and tool calls go in separate chunks; a separate empty-delta finish
    chunk; optional usage chunk with `choices: []`)."""

    def __init__(self, cid: str, model: str, include_usage: bool,
                 top_logprobs: int = 0) -> None:
        self.id = cid
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage
        self.with_top = top_logprobs > 0
        self.first = True
        self.had_tools = False

    def _chunk(self, delta: JsonObject, reason: str | None) -> JsonObject:
        if self.first:
            delta = {"role": "assistant", **delta}
            self.first = False
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "system_fingerprint": "fp_ollama",
                "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}

    def convert(self, ev: Event) -> list[JsonObject]:
        if isinstance(ev, TextDelta):
            c = self._chunk({"content": ev.text}, None)
            if ev.logprobs:
                c["choices"][0]["logprobs"] = {
                    "content": logprobs_json(ev.logprobs, self.with_top)}
            return [c]
        if isinstance(ev, ThinkingDelta):
            return [self._chunk({"reasoning": ev.text}, None)]
        if isinstance(ev, ToolCallEvent):
            self.had_tools = True
            return [self._chunk({"tool_calls": openai_tool_calls([tool_call_json(ev)])},
                                None)]
        if isinstance(ev, Done):
            out: list[JsonObject] = []
            if self.first:
                out.append(self._chunk({"content": ""}, None))
            reason = "tool_calls" if self.had_tools else done_finish_reason(ev)
            out.append(self._chunk({}, reason))
            if self.include_usage:
                out.append({"id": self.id, "object": "chat.completion.chunk",
                            "created": self.created, "model": self.model,
                            "system_fingerprint": "fp_ollama", "choices": [],
                            "usage": done_usage(ev)})
            return out
        return []


def done_finish_reason(d: Done) -> str:
    return d.done_reason if d.done_reason in ("stop", "length") else "stop"


def done_usage(d: Done) -> dict[str, int]:
    return {"prompt_tokens": d.prompt_eval_count, "completion_tokens": d.eval_count,
            "total_tokens": d.prompt_eval_count + d.eval_count}


def openai_chat_response(cid: str, model: str, result: JsonObject) -> JsonObject:
    msg = result.get("message", {})
    out_msg: JsonObject = {"role": "assistant", "content": msg.get("content", "")}
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
    """Engine events -> `text_completion` chunks (the last one carries finish_reason; with
    include_usage every chunk has a zero usage and a `choices: []` usage chunk follows)."""

    def __init__(self, cid: str, model: str, include_usage: bool,
                 top_logprobs: int = 0) -> None:
        self.id = cid
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage
        self.with_top = top_logprobs > 0

    def _chunk(self, choice: JsonObject) -> JsonObject:
        c: JsonObject = {"id": self.id, "object": "text_completion", "created": self.created,
                         "model": self.model, "system_fingerprint": "fp_ollama",
                         "choices": [choice]}
        if self.include_usage:
            c["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        return c

    def convert(self, ev: Event) -> list[JsonObject]:
        if isinstance(ev, TextDelta):
            choice: JsonObject = {"text": ev.text, "index": 0, "finish_reason": None}
            if ev.logprobs:
                choice["logprobs"] = {"content": logprobs_json(ev.logprobs, self.with_top)}
            return [self._chunk(choice)]
        if isinstance(ev, ThinkingDelta | ToolCallEvent):  # no place in a text completion
            return [self._chunk({"text": "", "index": 0, "finish_reason": None})]
        if isinstance(ev, Done):
            out = [self._chunk({"text": "", "index": 0,
                                "finish_reason": done_finish_reason(ev)})]
            if self.include_usage:
                out.append({"id": self.id, "object": "text_completion",
                            "created": self.created, "model": self.model,
                            "system_fingerprint": "fp_ollama", "choices": [],
                            "usage": done_usage(ev)})
            return out
        return []


def openai_completion_response(cid: str, model: str, result: JsonObject) -> JsonObject:
    return {"id": cid, "object": "text_completion", "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_ollama",
            "choices": [_completion_choice(result)], "usage": usage(result)}


def _completion_choice(chunk: JsonObject) -> JsonObject:
    choice: JsonObject = {"text": chunk.get("response", ""), "index": 0,
                          "finish_reason": finish_reason(chunk, False)}
    if chunk.get("logprobs"):
        choice["logprobs"] = {"content": chunk["logprobs"]}
    return choice
