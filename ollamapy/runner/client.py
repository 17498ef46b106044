"""Talk to one llama-server: `RunnerClient` on the scheduler's lease is the only code that
builds runner URLs or touches the HTTP session (`/completion` always streamed, `/tokenize`,
`/detokenize`, `/apply-template`, `/v1/embeddings`, `/health`, `/props`, `/v1/models`).

Bodies are built here from typed arguments only (never a client's JSON passed through), so
nothing unchecked reaches llama-server. Upstream errors become the error tree: a context overflow
is a 400 in Ollama's words, everything else keeps llama-server's message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp

from ollamapy.errors import BadRequest, OllamaError, PromptTooLong, RunnerAuthError, RunnerError
from ollamapy.inference.events import FLUSH, Flush
from ollamapy.inference.jsontypes import JsonObject

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
    "post_sampling_probs": bool, "preserved_tokens": list,
}


class RunnerConnectionError(RunnerError):
    """The runner could not be reached or dropped the connection: it may be dead."""


def check_completion_body(body: JsonObject) -> None:
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
        return PromptTooLong(CONTEXT_ERROR, tokens=int(err.get("n_prompt_tokens") or 0),
                             limit=int(err.get("n_ctx") or 0))
    if status == 500 and "does not match the expected" in message:
        return RunnerError(f"model output could not be parsed: {message}", status=502)
    if 400 <= status < 500 or status == 501:
        return OllamaError(message, status=status)
    return RunnerError(message, status=500)


MAX_EVENT_BYTES = 64 * 1024 * 1024

READ_END = b""
"""Yielded by sse_lines after the lines of each upstream read."""

NOT_POOLED = "this model does not produce pooled embeddings"



def _dumps(body: Mapping[str, Any]) -> str:
    """The JSON we send: strict, so a NaN/Infinity a client slipped in (Python's parser accepts
    them) becomes a 400 here instead of invalid JSON that llama-server answers with a 500."""
    try:
        return json.dumps(body, allow_nan=False)
    except ValueError:
        raise BadRequest("invalid JSON: NaN and Infinity are not valid JSON numbers") from None


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


class RunnerClient:
    """One llama-server, reached over the scheduler's session (fresh connection per request:
    llama-server closes streamed responses' connections, see `_send`).

    With `api_key` every request carries `Authorization: Bearer <key>` (runners started with a
    per-runner `--api-key` refuse anything else). Nothing a client sent as a header is passed on.
    """

    __slots__ = ("_auth", "_json_headers", "_sse_headers", "base_url", "session")

    def __init__(self, session: aiohttp.ClientSession, base_url: str,
                 api_key: str | None = None) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self._auth: dict[str, str] = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._json_headers = {"Content-Type": "application/json", **self._auth}
        # Explicit and minimal: no X-Conversation-Id (it disables cancel-on-disconnect upstream).
        self._sse_headers = {"Content-Type": "application/json",
                             "Accept": "text/event-stream", **self._auth}

    def __repr__(self) -> str:
        return f"RunnerClient({self.base_url!r})"

    async def _send(self, path: str, data: str, headers: dict[str, str]
                    ) -> aiohttp.ClientResponse:
        """POST once, on a fresh connection (the scheduler's session uses force_close).

        No retry: a POST to llama-server is not idempotent (a /completion that reached it runs).
        Keep-alive pooling was measured and rejected: llama-server closes streamed responses'
        connections and drops idle keep-alive ones unpredictably (96 of 228 pooled reuses found
        the socket already closed), so a pool needs a retry on nearly every other request and
        was no faster than a ~0.3 ms loopback connect."""
        return await self.session.post(self.base_url + path, data=data, headers=headers)

    async def _post_json(self, path: str, body: Mapping[str, Any]) -> Any:
        try:
            async with await self._send(path, _dumps(body), self._json_headers) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise upstream_error(resp.status, text)
                return json.loads(text)
        except aiohttp.ClientError as e:
            raise RunnerConnectionError(f"llama runner connection error: {e}") from None
        except ValueError as e:
            raise RunnerError(f"llama runner sent invalid JSON: {e}") from None

    async def _get_json(self, path: str) -> Any:
        try:
            async with self.session.get(self.base_url + path, headers=self._auth) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise upstream_error(resp.status, text)
                return json.loads(text)
        except aiohttp.ClientError as e:
            raise RunnerConnectionError(f"llama runner connection error: {e}") from None
        except ValueError as e:
            raise RunnerError(f"llama runner sent invalid JSON: {e}") from None

    async def completion(self, body: Mapping[str, Any]
                         ) -> AsyncGenerator[JsonObject | Flush, None]:
        """POST /completion with stream=true; yield each SSE event as it arrives, and FLUSH
        after the events of each upstream read.

        Leaving the iteration early (client gone, error) closes the upstream response, which
        makes llama-server cancel the task and free the slot at once.
        """
        body = {**body, "stream": True}
        check_completion_body(body)
        data = _dumps(body)
        try:
            resp = await self._send("/completion", data, self._sse_headers)
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
                    err = event["error"]
                    msg = err.get("message", str(err)) if isinstance(err, dict) else str(err)
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

    async def tokenize(self, content: str, *, add_special: bool = False) -> list[int]:
        if not isinstance(content, str):
            raise RunnerError("internal error: tokenize content must be text")
        data = await self._post_json("/tokenize", {
            "content": content, "add_special": bool(add_special), "parse_special": True})
        return [int(t) for t in data.get("tokens", [])]

    async def detokenize(self, tokens: Sequence[int], n_vocab: int | None = None) -> str:
        limit = n_vocab if n_vocab else 2**31 - 1
        if any(isinstance(t, bool) or not isinstance(t, int) or t < 0 or t >= limit
               for t in tokens):
            raise BadRequest("context contains an invalid token")
        data = await self._post_json("/detokenize", {"tokens": [int(t) for t in tokens]})
        return str(data.get("content", ""))

    async def apply_template(self, messages: list[JsonObject], *,
                             tools: list[JsonObject] | None,
                             enable_thinking: bool | None = None,
                             chat_template_kwargs: Mapping[str, Any] | None = None) -> str:
        """Render messages with the GGUF's own Jinja chat template (+ generation prompt);
        `chat_template_kwargs` (think levels) win over `enable_thinking`."""
        body: JsonObject = {"messages": messages, "add_generation_prompt": True}
        if tools:
            body["tools"] = tools
        if chat_template_kwargs:
            body["chat_template_kwargs"] = dict(chat_template_kwargs)
        elif enable_thinking is not None:
            body["chat_template_kwargs"] = {"enable_thinking": bool(enable_thinking)}
        data = await self._post_json("/apply-template", body)
        prompt = data.get("prompt")
        if not isinstance(prompt, str):
            raise RunnerError("llama runner returned no prompt from its chat template")
        return prompt

    async def rerank(self, query: str, documents: Sequence[str], top_n: int
                     ) -> tuple[list[tuple[int, float]], int]:
        """llama-server's /v1/rerank (a runner started with --rerank): (document index,
        relevance score) best first, at most `top_n`, and the tokens evaluated."""
        data = await self._post_json("/v1/rerank", {
            "query": query, "documents": list(documents), "top_n": int(top_n)})
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise RunnerError("llama runner returned no rerank results")
        ranked = [(int(r.get("index", 0)), float(r.get("relevance_score", 0.0)))
                  for r in results if isinstance(r, dict)]
        usage = data.get("usage") or {}
        return ranked, int(usage.get("prompt_tokens", 0) or 0)

    async def embeddings(self, inputs: Sequence[str], *, normalize: int = 2
                         ) -> tuple[list[list[float]], int]:
        """One pooled vector per input (llama-server normalises: 2 = L2, -1 = raw) and the
        tokens evaluated for all of them (OpenAI-shaped endpoint: it reports the counts, so
        nothing has to be tokenized separately just to count)."""
        if not all(isinstance(s, str) for s in inputs):
            raise RunnerError("internal error: embedding inputs must be text")
        try:
            data = await self._post_json("/v1/embeddings", {
                "input": list(inputs), "embd_normalize": int(normalize),
                "encoding_format": "float"})
        except OllamaError as e:
            if "Pooling type 'none'" in e.message:
                raise RunnerError(NOT_POOLED) from None
            raise
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise RunnerError("llama runner returned an unexpected embeddings shape")
        out: list[list[float]] = [[] for _ in inputs]
        for item in items:
            idx = int(item.get("index", 0))
            vec = item.get("embedding") or []
            if vec and isinstance(vec[0], list):
                if len(vec) != 1:
                    raise RunnerError(NOT_POOLED)
                vec = vec[0]
            if 0 <= idx < len(out):
                out[idx] = [float(x) for x in vec]
        usage = data.get("usage") or {}
        return out, int(usage.get("prompt_tokens", 0) or 0)

    async def health(self) -> bool:
        """True when the runner answers /health with 200 (model loaded, ready)."""
        try:
            async with self.session.get(self.base_url + "/health", headers=self._auth) as r:
                await r.read()
                return r.status == 200
        except aiohttp.ClientError:
            return False

    async def props(self) -> JsonObject:
        data = await self._get_json("/props")
        if not isinstance(data, dict):
            raise RunnerError("llama runner returned unexpected props")
        return data

    async def metrics_text(self, max_bytes: int) -> str | None:
        """llama-server's own Prometheus page (it runs with --metrics), at most `max_bytes`;
        None when it does not answer it (a scrape must never fail for one runner)."""
        try:
            async with self.session.get(self.base_url + "/metrics", headers=self._auth) as r:
                if r.status != 200:
                    return None
                return (await r.content.read(max_bytes)).decode("utf-8", "replace")
        except (aiohttp.ClientError, OSError):
            return None

    async def n_vocab(self) -> int | None:
        """Vocabulary size from /v1/models meta (for validating client-supplied token ids)."""
        try:
            data = await self._get_json("/v1/models")
            meta = (data.get("data") or [{}])[0].get("meta") or {}
        except (OllamaError, AttributeError, IndexError):
            return None
        v = meta.get("n_vocab")
        return int(v) if isinstance(v, int) else None
