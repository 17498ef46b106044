"""Talk to one llama-server: `RunnerClient` on the scheduler's lease is the only code that
builds runner URLs or touches the HTTP session (`/completion` always streamed, `/tokenize`,
`/detokenize`, `/apply-template`, `/v1/embeddings`, `/health`, `/props`, `/v1/models`).

Bodies are built here from typed arguments only (never a client's JSON passed through), so
nothing unchecked reaches llama-server. Upstream errors become the error tree: a context overflow
is a 400 in Ollama's words, everything else keeps llama-server's message.
"""

from __future__ import annotations

import json
import json.scanner
import logging
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from ollamapy.errors import BadRequest, OllamaError, PromptTooLong, RunnerAuthError, RunnerError
from ollamapy.inference.events import FLUSH, Flush
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.jsoncodec import strict_dumps
from ollamapy.runner import sse_stream
from ollamapy.runner.spare import SpareConnection

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


_orjson_loads = orjson.loads
# The C scanner json.loads ends in (typeshed types its argument as the scanner class itself).
_scan_json: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    json.JSONDecoder())  # type: ignore[arg-type]


def sse_event(line: bytes) -> JsonObject:
    """`data: {...}` -> the object; anything but one JSON object is a ValueError. This runs
    once per generated token: orjson parses it (no copy of the line), and what orjson
    refuses goes to `_sse_event_stdlib`, so exactly what json.loads(line[6:]) takes is
    taken (NaN, say) and errors keep its words."""
    try:
        obj = _orjson_loads(memoryview(line)[6:])
    except ValueError:  # orjson.JSONDecodeError is one
        return _sse_event_stdlib(line)
    if not isinstance(obj, dict):
        raise ValueError("event is not a JSON object")
    return obj


def _sse_event_stdlib(line: bytes) -> JsonObject:
    """`sse_event` by the stdlib's C scanner, without json.loads's per-call detours (bytes
    encoding detection, slicing, two whitespace regexes)."""
    text = line.decode()  # llama-server sends UTF-8; a bad byte is a ValueError, as in loads
    start = 6
    if text[start:start + 1].isspace():
        start = len(text) - len(text[start:].lstrip())
    try:
        obj, end = _scan_json(text, start)
    except StopIteration as e:
        raise ValueError(f"Expecting value: char {e.value}") from None
    if end != len(text) and not text[end:].isspace():
        raise ValueError(f"Extra data: char {end}")
    if not isinstance(obj, dict):
        raise ValueError("event is not a JSON object")
    return obj


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


NOT_POOLED = "this model does not produce pooled embeddings"


def _dumps(body: Mapping[str, Any]) -> str:
    """The JSON we send: strict, so a NaN/Infinity a client slipped in (Python's parser accepts
    them) becomes a 400 here instead of invalid JSON that llama-server answers with a 500."""
    try:
        return strict_dumps(body)
    except ValueError:
        raise BadRequest("invalid JSON: NaN and Infinity are not valid JSON numbers") from None


def _target(base_url: str, api_key: str | None) -> tuple[str, int, str, str]:
    """(host, port, path prefix, header lines) of a runner's POSTs, built once per client (the
    scheduler keeps one client per runner, so a request builds nothing). Explicit and minimal:
    no X-Conversation-Id (it disables cancel-on-disconnect upstream), nothing a client sent."""
    u = urlsplit(base_url)
    if api_key is not None and not all(" " < c <= "~" for c in api_key):
        raise RunnerError("internal error: runner API key is not a header token")
    auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
    headers = (f"Host: {u.netloc}\r\nContent-Type: application/json\r\n{auth}"
               "Connection: close\r\n")
    return u.hostname or "127.0.0.1", u.port or 80, u.path, headers


class RunnerClient:
    """One llama-server: POSTs over runner/sse_stream.py (a fresh connection per request:
    llama-server closes streamed responses' connections, see `_post_json`), GETs over the
    scheduler's session.

    With `api_key` every request carries `Authorization: Bearer <key>` (runners started with a
    per-runner `--api-key` refuse anything else). Nothing a client sent as a header is passed on.
    """

    __slots__ = ("_auth", "_headers", "_host", "_port", "_prefix", "_spare",
                 "base_url", "session")

    def __init__(self, session: aiohttp.ClientSession, base_url: str,
                 api_key: str | None = None, *, spare: bool = False) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self._auth: dict[str, str] = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._host, self._port, self._prefix, self._headers = _target(self.base_url, api_key)
        # `spare`: completions use a connection opened ahead (runner/spare.py); close() ends it
        self._spare = SpareConnection(self._host, self._port) if spare else None

    def close(self) -> None:
        """The runner is gone: drop the connection kept open to it."""
        if self._spare is not None:
            self._spare.close()

    async def _open_completion(self, request: bytes) -> sse_stream.SSEProtocol:
        """Send a streamed /completion on the runner's spare connection, else a new one. A
        spare the runner closed before reading anything (no response byte came back) cannot
        have started the request: it is sent again, once, on a new connection."""
        proto = self._spare.take() if self._spare is not None else None
        if proto is not None:
            try:
                return await sse_stream.send(proto, request)
            except sse_stream.StreamError:
                if proto.received:
                    raise
        return await sse_stream.open_stream(self._host, self._port, request,
                                           sse_stream.CONNECT_TIMEOUT_S)

    def __repr__(self) -> str:
        return f"RunnerClient({self.base_url!r})"

    def _request(self, path: str, data: bytes, extra: str = "") -> bytes:
        """A complete POST: pre-built head (see `_target`) + JSON body."""
        return (f"POST {self._prefix}{path} HTTP/1.1\r\n{self._headers}{extra}"
                f"Content-Length: {len(data)}\r\n\r\n").encode("latin-1") + data

    async def _post_json(self, path: str, body: Mapping[str, Any]) -> Any:
        """POST once, on a fresh connection, over runner/sse_stream.py like `completion` (no
        retry: a POST to llama-server is not idempotent). Keep-alive pooling was measured
        and rejected: llama-server closes streamed responses' connections and drops idle
        keep-alive ones unpredictably (96 of 228 pooled reuses found the socket already
        closed), so a pool needs a retry on nearly every other request."""
        request = self._request(path, _dumps(body).encode())
        try:
            status, raw = await sse_stream.fetch(self._host, self._port, request,
                                                 sse_stream.CONNECT_TIMEOUT_S)
        except sse_stream.StreamError as e:
            raise RunnerConnectionError(f"llama runner connection error: {e}") from None
        if status != 200:
            raise upstream_error(status, raw.decode("utf-8", "replace"))
        try:
            return json.loads(raw)
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

        A bare asyncio protocol, not the session (runner/sse_stream.py says why): a fresh
        connection per request, as llama-server closes streamed responses' connections
        anyway. No retry: a /completion that reached the runner runs. Leaving the iteration
        early (client gone, error) closes the connection, which makes llama-server cancel
        the task and free the slot at once.
        """
        body = {**body, "stream": True}
        check_completion_body(body)
        data = _dumps(body).encode()
        request = self._request("/completion", data, "Accept: text/event-stream\r\n")
        try:
            proto = await self._open_completion(request)
        except sse_stream.StreamError as e:
            raise RunnerConnectionError(f"llama runner connection error: {e}") from None
        try:
            assert proto.head is not None
            if proto.head.status != 200:
                text = (await proto.read_body()).decode("utf-8", "replace")
                raise upstream_error(proto.head.status, text)
            lines = proto.lines
            while True:
                if not lines:
                    if proto.error is not None:
                        raise RunnerConnectionError(
                            f"llama runner connection error: {proto.error}")
                    if proto.done:
                        break
                    await proto.wait()
                    continue
                raw = proto.pop()
                if not raw:  # READ_END
                    yield FLUSH
                    continue
                if not raw.startswith(b"data: "):
                    continue  # ":" keep-alive pings
                event = sse_event(raw)
                if "error" in event:
                    err = event["error"]
                    msg = err.get("message", str(err)) if isinstance(err, dict) else str(err)
                    raise RunnerError(msg)
                yield event
                if event.get("stop"):
                    return
            raise RunnerConnectionError("llama runner closed the stream before finishing")
        except ValueError as e:
            raise RunnerError(f"llama runner sent invalid JSON: {e}") from None
        finally:
            proto.close()

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
