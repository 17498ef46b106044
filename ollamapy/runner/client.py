"""Talk to one llama-server: `/completion` (always streamed), `/tokenize`, `/detokenize`,
`/apply-template`, `/embeddings`.

Bodies are built here from typed arguments only (never a client's JSON passed through), so
nothing unchecked reaches llama-server. Upstream errors become the error tree: a context overflow
is a 400 in Ollama's words, everything else keeps llama-server's message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp

from ollamapy.errors import BadRequest, OllamaError, RunnerAuthError, RunnerError
from ollamapy.relay import FLUSH

log = logging.getLogger("ollamapy.runner.client")

CONTEXT_ERROR = ("the prompt is longer than the context length currently available to the "
                 "model; shorten the prompt, adjust the context length in settings, or use a "
                 "model with a longer context length")
# Fields we allow into a /completion body, with their JSON types (the body is built by
# ollamapy; this is the last line of defence against a programming error).
_COMPLETION_TYPES: dict[str, type | tuple[type, ...]] = {
    "prompt": (str, list, dict), "stream": bool, "n_predict": int, "temperature": float,
    "top_k": int, "top_p": float, "min_p": float, "typical_p": float, "repeat_last_n": int,
    "repeat_penalty": float, "presence_penalty": float, "frequency_penalty": float, "seed": int,
    "n_keep": int, "stop": list, "mirostat": int, "top_n_sigma": float,
    "xtc_probability": float, "dry_multiplier": float, "dynatemp_range": float, "min_keep": int,
    "n_probs": int, "ignore_eos": bool, "json_schema": dict, "grammar": str,
    "cache_prompt": bool, "return_tokens": bool, "timings_per_token": bool,
    "post_sampling_probs": bool,
}


class RunnerConnectionError(RunnerError):
    """The runner could not be reached or dropped the connection: it may be dead."""


def check_completion_body(body: dict[str, Any]) -> None:
    for k, v in body.items():
        t = _COMPLETION_TYPES.get(k)
        if t is None:
            raise RunnerError(f"internal error: unexpected completion field {k!r}")
        if t is float and isinstance(v, int) and not isinstance(v, bool):
            continue
        if not isinstance(v, t) or (t is int and isinstance(v, bool)):
            raise RunnerError(f"internal error: bad type for completion field {k!r}")


def upstream_error(status: int, text: str) -> OllamaError:
    """llama-server's error body -> the error we raise (status kept, Ollama wording where known)."""
    try:
        err = json.loads(text).get("error", {})
    except (ValueError, AttributeError):
        err = {}
    if not isinstance(err, dict):
        err = {"message": str(err)}
    message = str(err.get("message") or text.strip() or f"llama-server answered {status}")
    kind = err.get("type")
    if status == 401:
        return RunnerAuthError("internal error: the llama runner refused ollamapy's runner key")
    if kind == "exceed_context_size_error":
        return BadRequest(CONTEXT_ERROR)
    if status == 500 and "does not match the expected" in message:
        return RunnerError(f"model output could not be parsed: {message}", status=502)
    if 400 <= status < 500 or status == 501:
        return OllamaError(message, status=status)
    return RunnerError(message, status=500)


def _auth(api_key: str) -> dict[str, str]:
    """The runner's own key (every llama-server refuses requests without it but /health)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _headers(api_key: str = "") -> dict[str, str]:
    # Explicit and minimal: no X-Conversation-Id (it disables cancel-on-disconnect upstream).
    return {"Content-Type": "application/json", "Accept": "text/event-stream", **_auth(api_key)}


def _dumps(body: dict[str, Any]) -> str:
    """The JSON we send: strict, so a NaN/Infinity a client slipped in (Python's parser accepts
    them) becomes a 400 here instead of invalid JSON that llama-server answers with a 500."""
    try:
        return json.dumps(body, allow_nan=False)
    except ValueError:
        raise BadRequest("invalid JSON: NaN and Infinity are not valid JSON numbers") from None


async def _send(session: aiohttp.ClientSession, url: str, data: str,
                headers: dict[str, str]) -> aiohttp.ClientResponse:
    """POST once, on a fresh connection (the scheduler's session uses force_close).

    No retry: a POST to llama-server is not idempotent (a /completion that reached it runs).
    Keep-alive pooling was measured and rejected: llama-server closes streamed responses'
    connections and drops idle keep-alive ones unpredictably (96 of 228 pooled reuses found the
    socket already closed), so a pool needs a retry on nearly every other request and was no
    faster than a ~0.3 ms loopback connect."""
    return await session.post(url, data=data, headers=headers)


async def _post_json(session: aiohttp.ClientSession, url: str, body: dict[str, Any],
                     api_key: str = "") -> Any:
    try:
        async with await _send(session, url, _dumps(body), {
                "Content-Type": "application/json", **_auth(api_key)}) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise upstream_error(resp.status, text)
            return json.loads(text)
    except aiohttp.ClientError as e:
        raise RunnerConnectionError(f"llama runner connection error: {e}") from None
    except ValueError as e:
        raise RunnerError(f"llama runner sent invalid JSON: {e}") from None


MAX_EVENT_BYTES = 64 * 1024 * 1024


READ_END = b""
"""Yielded by sse_lines after the lines of each upstream read."""


async def sse_lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Non-empty lines of an SSE body, each as soon as its newline arrives (no size limit short
    of MAX_EVENT_BYTES: the final event repeats the whole prompt), then READ_END per read."""
    buf = b""
    async for chunk in content.iter_any():
        buf = buf + chunk if buf else chunk
        start = 0
        while True:
            i = buf.find(b"\n", start)
            if i < 0:
                break
            if i > start:
                yield buf[start:i]
            start = i + 1
        buf = buf[start:]
        yield READ_END
        if len(buf) > MAX_EVENT_BYTES:
            raise RunnerError("llama runner sent an oversized event")
    if buf.strip():
        yield buf


async def completion_stream(session: aiohttp.ClientSession, base_url: str,
                            body: dict[str, Any], *, api_key: str = ""
                            ) -> AsyncIterator[dict[str, Any]]:
    """POST /completion with stream=true and yield each SSE event as it arrives.

    Leaving the iteration early (client gone, error) closes the upstream response, which makes
    llama-server cancel the task and free the slot at once.
    """
    body = {**body, "stream": True}
    check_completion_body(body)
    data = _dumps(body)
    try:
        resp = await _send(session, f"{base_url}/completion", data, _headers(api_key))
    except aiohttp.ClientError as e:
        raise RunnerConnectionError(f"llama runner connection error: {e}") from None
    try:
        if resp.status != 200:
            raise upstream_error(resp.status, await resp.text())
        async for raw in sse_lines(resp.content):
            if not raw:  # READ_END
                yield FLUSH
                continue
            if not raw.startswith(b"data: "):
                continue  # ":" keep-alive pings
            event = json.loads(raw[6:])
            if "error" in event:
                e = event["error"]
                msg = e.get("message", str(e)) if isinstance(e, dict) else str(e)
                raise RunnerError(msg)
            yield event
            if event.get("stop"):
                return
        raise RunnerConnectionError("llama runner closed the stream before finishing")
    except aiohttp.ClientError as e:
        raise RunnerConnectionError(f"llama runner connection error: {e}") from None
    except ValueError as e:
        raise RunnerError(f"llama runner sent invalid JSON: {e}") from None
    finally:
        resp.close()


async def tokenize(session: aiohttp.ClientSession, base_url: str, content: str, *,
                   add_special: bool = False, api_key: str = "") -> list[int]:
    if not isinstance(content, str):
        raise RunnerError("internal error: tokenize content must be text")
    data = await _post_json(session, f"{base_url}/tokenize", {
        "content": content, "add_special": bool(add_special), "parse_special": True}, api_key)
    return [int(t) for t in data.get("tokens", [])]


async def detokenize(session: aiohttp.ClientSession, base_url: str,
                     tokens: Sequence[int], n_vocab: int | None = None, *,
                     api_key: str = "") -> str:
    clean = [int(t) for t in tokens]
    limit = n_vocab if n_vocab else 2**31 - 1
    if any(isinstance(t, bool) or t < 0 or t >= limit for t in tokens):
        raise BadRequest("context contains an invalid token")
    data = await _post_json(session, f"{base_url}/detokenize", {"tokens": clean}, api_key)
    return str(data.get("content", ""))


async def apply_template(session: aiohttp.ClientSession, base_url: str,
                         messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None,
                         enable_thinking: bool | None = None, api_key: str = "") -> str:
    """Render messages with the GGUF's own Jinja chat template (+ generation prompt)."""
    body: dict[str, Any] = {"messages": messages, "add_generation_prompt": True}
    if tools:
        body["tools"] = tools
    if enable_thinking is not None:
        body["chat_template_kwargs"] = {"enable_thinking": bool(enable_thinking)}
    data = await _post_json(session, f"{base_url}/apply-template", body, api_key)
    prompt = data.get("prompt")
    if not isinstance(prompt, str):
        raise RunnerError("llama runner returned no prompt from its chat template")
    return prompt


async def embeddings(session: aiohttp.ClientSession, base_url: str, inputs: list[str], *,
                     normalize: int = 2, api_key: str = "") -> list[list[float]]:
    """One pooled vector per input (llama-server normalises: 2 = L2, -1 = raw)."""
    if not all(isinstance(s, str) for s in inputs):
        raise RunnerError("internal error: embedding inputs must be text")
    data = await _post_json(session, f"{base_url}/embeddings", {
        "content": inputs, "embd_normalize": int(normalize)}, api_key)
    if not isinstance(data, list):
        raise RunnerError("llama runner returned an unexpected embeddings shape")
    out: list[list[float]] = [[] for _ in inputs]
    for item in data:
        idx = int(item.get("index", 0))
        vec = item.get("embedding") or []
        if vec and isinstance(vec[0], list):
            if len(vec) != 1:
                raise RunnerError("this model does not produce pooled embeddings")
            vec = vec[0]
        if 0 <= idx < len(out):
            out[idx] = [float(x) for x in vec]
    return out


async def n_vocab(session: aiohttp.ClientSession, base_url: str, *,
                  api_key: str = "") -> int | None:
    """Vocabulary size from /v1/models meta (for validating client-supplied token ids)."""
    try:
        async with session.get(f"{base_url}/v1/models", headers=_auth(api_key)) as resp:
            if resp.status != 200:
                return None
            data = await resp.json()
        meta = (data.get("data") or [{}])[0].get("meta") or {}
        v = meta.get("n_vocab")
        return int(v) if isinstance(v, int) else None
    except (aiohttp.ClientError, ValueError, AttributeError, IndexError):
        return None
