"""Ollama chat/generate chunks (server/native_chunks.py) -> OpenAI `chat.completion(.chunk)` and
`text_completion` objects, as Ollama's openai middleware reframes them."""

from __future__ import annotations

import json
import time

from ollamapy.inference.jsontypes import JsonObject


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

    def _chunk(self, delta: JsonObject, reason: str | None) -> JsonObject:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "system_fingerprint": "fp_ollama",
                "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}

    def convert(self, chunk: JsonObject) -> list[JsonObject]:
        msg = chunk.get("message", {})
        out: list[JsonObject] = []
        deltas: list[JsonObject] = []
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
    """Ollama generate chunks -> `text_completion` chunks (the last one carries finish_reason;
    with include_usage every chunk has a zero usage and a `choices: []` usage chunk follows)."""

    def __init__(self, cid: str, model: str, include_usage: bool) -> None:
        self.id = cid
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage

    def convert(self, chunk: JsonObject) -> list[JsonObject]:
        c: JsonObject = {"id": self.id, "object": "text_completion", "created": self.created,
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
