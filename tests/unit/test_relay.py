"""Relay transforms on fake upstream events: engine events, chunk shapes, metrics, aggregation,
OpenAI framing, and that every event is passed on as soon as it arrives."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any

from ollamapy.inference.engine import Pass, done_reason, finish, relay
from ollamapy.inference.events import (
    Done,
    Event,
    TextDelta,
    ThinkingDelta,
    TokenLogprob,
    ToolCallEvent,
)
from ollamapy.inference.output import OutputParser
from ollamapy.server.native_chunks import Aggregate, NativeChunks, metrics
from ollamapy.server.openai_chunks import (
    OpenAIChatStream,
    OpenAICompletionStream,
    openai_chat_response,
)
from ollamapy.template.thinking import ThinkingParser
from ollamapy.template.tools import ToolParser

FINAL = {"content": "", "stop": True, "stop_type": "eos", "tokens": [],
         "timings": {"cache_n": 3, "prompt_n": 5, "prompt_ms": 12.5, "predicted_n": 2,
                     "predicted_ms": 20.25}}


async def events(pieces: list[str], final: dict[str, Any] = FINAL
                 ) -> AsyncGenerator[dict[str, Any], None]:
    for i, p in enumerate(pieces):
        yield {"content": p, "tokens": [100 + i], "stop": False}
    yield final


async def collect(pieces: list[str], parser: OutputParser | None = None
                  ) -> tuple[list[Event], Pass]:
    st = Pass()
    out = [e async for e in relay(events(pieces), parser or OutputParser(), None, st)]
    return out, st


def test_metrics_and_reasons() -> None:
    m = metrics(finish(FINAL, 0, 0.25))
    assert m["prompt_eval_count"] == 8 and m["prompt_eval_duration"] == 12_500_000
    assert m["eval_count"] == 2 and m["eval_duration"] == 20_250_000
    assert m["load_duration"] == 250_000_000 and all(isinstance(v, int) for v in m.values())
    assert "load_duration" not in metrics(finish(FINAL, 0, 0.0))  # omitempty
    assert done_reason({"stop_type": "limit"}) == "length"
    assert done_reason({"stop_type": "word"}) == "stop"
    assert done_reason({"stop_type": "eos", "truncated": True}) == "length"


async def test_relay_passes_each_event_and_final() -> None:
    out, st = await collect(["Hel", "lo"])
    assert [e.text for e in out if isinstance(e, TextDelta)] == ["Hel", "lo"]
    assert st.final is FINAL and isinstance(out[0], TextDelta) and out[0].tokens == [100]


async def test_no_buffering_first_event_before_upstream_finishes() -> None:
    """The first event is available while the upstream is still blocked."""
    gate = asyncio.Event()

    async def slow() -> AsyncGenerator[dict[str, Any], None]:
        yield {"content": "first", "tokens": [1], "stop": False}
        await gate.wait()
        yield FINAL

    st = Pass()
    it = relay(slow(), OutputParser(), None, st)
    first = await asyncio.wait_for(it.__anext__(), 1)
    assert isinstance(first, TextDelta) and first.text == "first"
    gate.set()
    assert [e async for e in it] == [] and st.final is FINAL


async def test_thinking_and_tools_through_relay() -> None:
    parser = OutputParser(ThinkingParser("<think>", "</think>"),
                          ToolParser("<tool_call>", ["get_weather"]))
    out, _ = await collect(["<think>", "hmm", "</think>", "ok ", "<tool_call>",
                            '{"name": "get_weather", ', '"arguments": {"city": "Oslo"}}',
                            "</tool_call>"], parser)
    thinking = "".join(e.text for e in out if isinstance(e, ThinkingDelta))
    content = "".join(e.text for e in out if isinstance(e, TextDelta))
    calls = [e for e in out if isinstance(e, ToolCallEvent)]
    assert thinking == "hmm" and content == "ok "
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Oslo"})]


async def _with_done(pieces: list[str], parser: OutputParser | None = None) -> list[Event]:
    out, st = await collect(pieces, parser)
    assert st.final is not None
    return [*out, finish(st.final, 0, 0)]


async def test_aggregate_generate_and_chat() -> None:
    agg_g, agg_c = Aggregate(), Aggregate()
    gen, chat = NativeChunks("m", chat=False), NativeChunks("m", chat=True)
    for e in await _with_done(["a", "b"]):
        g, c = gen.chunk(e), chat.chunk(e)
        assert g is not None and c is not None
        agg_g.add(g)
        agg_c.add(c)
    g, c = agg_g.result(), agg_c.result()
    assert g["response"] == "ab" and g["done"] and g["done_reason"] == "stop"
    assert c["message"] == {"role": "assistant", "content": "ab"} and c["eval_count"] == 2


async def test_openai_chat_stream_framing() -> None:
    conv = OpenAIChatStream("chatcmpl-1", "m", include_usage=True)
    frames: list[dict[str, Any]] = []
    parser = OutputParser(ThinkingParser("<think>", "</think>"), None)
    for e in await _with_done(["<think>x</think>", "Hi"], parser):
        frames += conv.convert(e)
    assert frames[0]["choices"][0]["delta"] == {"role": "assistant", "reasoning": "x"}
    assert frames[1]["choices"][0]["delta"] == {"content": "Hi"}
    assert frames[-2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert frames[-1]["choices"] == [] and frames[-1]["usage"] == {
        "prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10}
    assert {f["id"] for f in frames} == {"chatcmpl-1"}


def test_openai_chat_stream_tool_calls_and_empty_answer() -> None:
    conv = OpenAIChatStream("chatcmpl-3", "m", include_usage=False)
    call = conv.convert(ToolCallEvent("f", {"a": 1}, "call_x", 0))[0]["choices"][0]["delta"]
    assert call["role"] == "assistant" and call["tool_calls"][0]["id"] == "call_x"
    assert json.loads(call["tool_calls"][0]["function"]["arguments"]) == {"a": 1}
    end = conv.convert(Done(done_reason="length"))
    assert [f["choices"][0]["finish_reason"] for f in end] == ["tool_calls"]
    empty = OpenAIChatStream("chatcmpl-4", "m", include_usage=False).convert(Done())
    assert [f["choices"][0]["delta"] for f in empty] == [{"role": "assistant", "content": ""},
                                                        {}]


def test_done_chunk_shapes() -> None:
    """Load/unload answers carry no metrics; `_debug_render_only` has no done_reason."""
    g = NativeChunks("m", chat=False)
    load = g.chunk(Done(done_reason="load"))
    assert load is not None and list(load) == ["model", "created_at", "response", "done",
                                               "done_reason"]
    dbg = NativeChunks("m", chat=True).chunk(Done(debug_rendered="P", debug_image_count=1))
    assert dbg is not None and "done_reason" not in dbg
    assert dbg["_debug_info"] == {"rendered_template": "P", "image_count": 1}


def test_openai_tool_calls_are_json_strings() -> None:
    result = {"message": {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_x", "function": {"index": 0, "name": "f", "arguments": {"a": 1}}}]},
        "done": True, "done_reason": "stop", "prompt_eval_count": 1, "eval_count": 2}
    r = openai_chat_response("chatcmpl-2", "m", result)
    choice = r["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {"a": 1}


def test_openai_completion_stream() -> None:
    conv = OpenAICompletionStream("cmpl-1", "m", include_usage=True)
    a = conv.convert(TextDelta("x"))
    b = conv.convert(Done(done_reason="length", prompt_eval_count=1, eval_count=1))
    assert a[0]["choices"][0]["finish_reason"] is None and a[0]["usage"]["total_tokens"] == 0
    assert b[0]["choices"][0]["finish_reason"] == "length"
    assert b[1]["choices"] == [] and b[1]["usage"]["total_tokens"] == 2


def _decode(chunks: list[bytes]) -> list[bytes]:
    """What the upstream stream decoder queues for these reads (READ_END = b"" per read)."""

    from ollamapy.runner.sse_stream import SSEProtocol

    proto = SSEProtocol(asyncio.new_event_loop())
    for c in chunks:
        proto.data_received(c)
    return list(proto.lines)


def test_sse_lines_split_across_reads() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
    raw = [head + b'data: {"a":', b' 1}\n\ndata: {"b": 2}\n',
           b"\n: ping\n\ndata: {\"c\": 3}\n\n"]
    # b"" marks the end of each upstream read (a flush point for the writer)
    assert _decode(raw) == [b"", b'data: {"a": 1}', b'data: {"b": 2}', b"", b": ping",
                            b'data: {"c": 3}', b""]


def test_sse_chunked_framing_split_anywhere() -> None:
    """Chunked bodies (what llama-server sends) decode to the same lines however the reads
    cut the size lines, the chunk data and the CRLFs."""
    body = b'data: {"a": 1}\n\ndata: {"b": 2}\r\n\r\n: ping\n\n'
    framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:7], body[7:30], body[30:]))
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + framed + b"0\r\n\r\n"
    want = [b'data: {"a": 1}', b'data: {"b": 2}', b": ping"]
    for cut in range(1, len(wire)):
        got = [x for x in _decode([wire[:cut], wire[cut:]]) if x]
        assert got == want, cut
    one = [wire[i:i + 1] for i in range(len(wire))]
    assert [x for x in _decode(one) if x] == want


def test_sse_head_and_framing_errors() -> None:

    import pytest

    from ollamapy.runner.sse_stream import SSEProtocol, StreamError, parse_head

    with pytest.raises(StreamError):
        parse_head(b"SSH-2.0 hello")
    with pytest.raises(StreamError):
        parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x")
    h = parse_head(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 5")
    assert (h.status, h.chunked, h.length) == (400, False, 5)
    proto = SSEProtocol(asyncio.new_event_loop())
    proto.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert isinstance(proto.error, StreamError)
    proto = SSEProtocol(asyncio.new_event_loop())
    proto.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\ndata: 1\n")
    proto.connection_lost(None)  # closed 4 bytes short of its Content-Length
    assert isinstance(proto.error, StreamError) and not proto.done
    proto = SSEProtocol(asyncio.new_event_loop())
    proto.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ndata: 1\nX")
    assert proto.done and [x for x in proto.lines if x] == [b"data: 1", b"X"]


def test_upstream_error_mapping() -> None:
    from ollamapy.runner.client import CONTEXT_ERROR, upstream_error

    e = upstream_error(400, json.dumps({"error": {
        "code": 400, "type": "exceed_context_size_error", "message": "request too big"}}))
    assert (e.status, e.message) == (400, CONTEXT_ERROR)
    e = upstream_error(500, json.dumps({"error": {
        "code": 500, "type": "server_error",
        "message": "The model produced output that does not match the expected peg-native"}}))
    assert e.status == 502
    e = upstream_error(501, json.dumps({"error": {"message": "embeddings not enabled"}}))
    assert (e.status, e.message) == (501, "embeddings not enabled")
    e = upstream_error(500, "garbage")
    assert (e.status, e.message) == (500, "garbage")


def test_openai_completions_logprobs_mapped_and_returned() -> None:
    """/v1/completions `logprobs: N` asks for N top log probabilities (Ollama's
    FromCompleteRequest) and the choices carry them; out of range -> 400, not a 500."""
    import pytest

    from ollamapy.api.openai import CompletionRequest, to_generate
    from ollamapy.errors import BadRequest
    from ollamapy.server.openai_chunks import openai_completion_response

    req = to_generate(CompletionRequest(model="m", prompt="hi", logprobs=3))
    assert req.logprobs is True and req.top_logprobs == 3
    plain = to_generate(CompletionRequest(model="m", prompt="hi"))
    assert not plain.logprobs and not plain.top_logprobs
    with pytest.raises(BadRequest, match="between 0 and 20"):
        to_generate(CompletionRequest(model="m", prompt="hi", logprobs=21))
    lp = [{"token": "a", "logprob": -0.5, "bytes": [97], "top_logprobs": []}]
    conv = OpenAICompletionStream("cmpl-1", "m", False, top_logprobs=3)
    chunk = conv.convert(TextDelta("a", [], [TokenLogprob("a", -0.5, [97])]))[0]
    assert chunk["choices"][0]["logprobs"] == {"content": lp}
    assert "logprobs" not in conv.convert(TextDelta("b"))[0]["choices"][0]
    whole = openai_completion_response("cmpl-1", "m", {"response": "a", "done": True,
                                                      "done_reason": "stop", "logprobs": lp})
    assert whole["choices"][0]["logprobs"] == {"content": lp}


def test_openai_finish_reason_tool_calls_whatever_the_stop() -> None:
    """Ollama reports `tool_calls` once a call was produced, also when the budget ran out."""
    from ollamapy.server.openai_chunks import finish_reason

    assert finish_reason({"done": True, "done_reason": "length"}, True) == "tool_calls"
    assert finish_reason({"done": True, "done_reason": "length"}, False) == "length"
    assert finish_reason({"done": False, "done_reason": None}, True) is None


def test_openai_midstream_error_type_follows_status() -> None:
    from ollamapy.errors import BadRequest, OllamaError
    from ollamapy.server.wire import sse_error

    bad = json.loads(sse_error(BadRequest("x"))[6:])
    assert bad["error"]["type"] == "invalid_request_error"
    other = json.loads(sse_error(OllamaError("y"))[6:])
    assert other["error"] == {"message": "y", "type": "api_error", "param": None, "code": None}


def test_sse_reading_pauses_while_lines_wait() -> None:
    """Back-pressure: a consumer that falls behind pauses the upstream socket (decoded lines
    never pile up without bound), and draining resumes it."""

    from ollamapy.runner.sse_stream import HIGH_WATER, SSEProtocol

    class Transport:
        paused = False

        def pause_reading(self) -> None:
            self.paused = True

        def resume_reading(self) -> None:
            self.paused = False

        def close(self) -> None:
            pass

    proto = SSEProtocol(asyncio.new_event_loop())
    tr = Transport()
    proto.connection_made(tr)  # type: ignore[arg-type]
    proto.data_received(b"HTTP/1.1 200 OK\r\n\r\n")
    line = b"data: " + b"x" * 1000 + b"\n"
    while not tr.paused:
        proto.data_received(line * 16)
    assert proto.queued > HIGH_WATER
    while tr.paused:
        proto.pop()
    assert proto.queued <= HIGH_WATER // 4


def test_sse_event_is_as_strict_as_json_loads() -> None:
    """orjson parses the events; what it refuses falls back to the stdlib path, so exactly
    what json.loads takes is taken (NaN, a lone surrogate escape) and the rest is a
    ValueError."""
    import pytest

    from ollamapy.runner.client import sse_event

    ev = b'data: {"content":" w\\u00f6rld","tokens":[1917],"stop":false}'
    assert sse_event(ev) == json.loads(ev[6:])
    assert sse_event(b'data:  {"a": 1}  ') == {"a": 1}
    for taken in (b'data: {"p": NaN}', b'data: {"c": "\\ud800"}'):
        assert repr(sse_event(taken)) == repr(json.loads(taken[6:]))
    for bad in (b'data: {"a": 1} x', b"data: ", b"data: [1]", b'data: {"a":', b"data: \xff",
                b'data: "text"'):
        with pytest.raises(ValueError):
            sse_event(bad)


def test_wire_encoder_writes_strict_compact_json() -> None:
    """jsoncodec.dumps (every response body and streamed chunk) writes compact UTF-8 JSON that
    parses back to what was given; NaN and infinities become null (valid JSON, where the
    stdlib wrote NaN); what orjson refuses (an integer past 64 bits, a non-str key) is
    written by the stdlib encoder; what nothing can encode is a TypeError."""
    import pytest

    from ollamapy import jsoncodec
    from ollamapy.server import wire

    def strict(raw: bytes) -> object:
        def no_constant(name: str) -> object:
            raise AssertionError(f"invalid JSON constant {name}")
        return json.loads(raw, parse_constant=no_constant)

    for obj in ({"model": "m", "response": ' wörld \u2028 "q"\n', "done": False},
                {"a": [1, 2.5, None, True, {"b": "x"}], "d": 1e300, "e": -0.0},
                "text", 5, [], {}, {"big": 2 ** 70, "n": [-(2 ** 64)]}):
        assert strict(jsoncodec.dumps(obj)) == obj
    assert jsoncodec.dumps({"a": [1, "x"], "b": {"c": None}}) == b'{"a":[1,"x"],"b":{"c":null}}'
    assert "ö".encode() in jsoncodec.dumps({"x": "ö"})  # UTF-8, not \\u escapes
    assert jsoncodec.dumps({1: "a"}) == b'{"1":"a"}'  # the stdlib's way with an int key
    assert strict(jsoncodec.dumps({"c": float("nan"), "i": [float("inf")]})) == {"c": None,
                                                                              "i": [None]}
    assert wire.ndjson({"a": 1}) == b'{"a":1}\n'
    assert wire.sse({"a": 1}) == b'data: {"a":1}\n\n' and wire.sse("[DONE]") == wire.SSE_DONE
    with pytest.raises(TypeError):
        jsoncodec.dumps({"x": object()})
    # a lone surrogate (UTF-8 cannot carry one; orjson refuses it) is written as U+FFFD, as
    # Go writes it, in a value and a key and beside a big int (the stdlib path)
    assert strict(jsoncodec.dumps({"e": "a\ud800b", "k\udc00": [2 ** 70]})) == {
        "e": "a\ufffdb", "k\ufffd": [2 ** 70]}
    assert strict(jsoncodec.dumps({"e": "\U0001f600"})) == {"e": "\U0001f600"}
