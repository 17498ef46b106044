"""Property-based fuzzers (issue 11): hostile bytes/text into every parser of untrusted input.

Property for each target: it returns, or raises its documented error type (a clear 4xx/5xx in
the API's shape) within the hang alarm; never another exception, never a hang. The SSE parser is
also checked for losing or inventing no line. Run long with `make fuzz`.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from ollamapy import modelfile
from ollamapy.api.decode import Caps, decode
from ollamapy.api.inference import ChatRequest, EmbedRequest, GenerateRequest
from ollamapy.errors import OllamaError
from ollamapy.gguf import GGUFError, model_info, parse_gguf
from ollamapy.store import store as st
from ollamapy.store.manifest import parse_manifest as registry_manifest
from ollamapy.template.gotemplate import Limits, TemplateError, parse
from tests.fuzz_support import example, fuzz_settings, report, write_report

_valid_gguf: list[bytes] = []


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    write_report()
    print("\nfuzz:", json.dumps(report()))


def _gguf_seed(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from tests.unit.test_gguf import write_fixture

    if not _valid_gguf:
        p = write_fixture(tmp_path_factory.mktemp("fz") / "t.gguf", n_tokens=30)
        _valid_gguf.append(p.read_bytes())
    return _valid_gguf[0]


@pytest.fixture(scope="module")
def gguf_seed(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _gguf_seed(tmp_path_factory)


# ---------- GGUF ----------
@hs.composite
def mutated(draw: Any, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(hs.integers(1, 8))):
        op = draw(hs.sampled_from(["flip", "u64", "cut", "insert"]))
        at = draw(hs.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= draw(hs.integers(1, 255))
        elif op == "u64" and len(data) >= at + 8:
            data[at:at + 8] = struct.pack("<Q", draw(hs.sampled_from(
                [0, 1, 2**31, 2**32 - 1, 2**40, 2**62, 2**64 - 1])))
        elif op == "cut":
            del data[at:]
        else:
            data[at:at] = draw(hs.binary(max_size=16))
    return bytes(data)


def test_fuzz_gguf_reader(gguf_seed: bytes) -> None:
    @fuzz_settings()
    @given(hs.one_of(mutated(gguf_seed), hs.binary(max_size=256)))
    def prop(data: bytes) -> None:
        with example("gguf"):
            try:
                g = parse_gguf(memoryview(data), len(data))
            except GGUFError:
                return
            model_info(g, verbose=False)
    prop()


# ---------- Modelfile ----------
_MF_WORDS = ["FROM ", "PARAMETER ", "TEMPLATE ", "SYSTEM ", "ADAPTER ", "LICENSE ", "MESSAGE ",
             "REQUIRES ", '"""', '"', "\n", " ", "#", "user ", "temperature ", "stop ", "1.5",
             "\\", "\t", "llama3", "\ufeff", "\r\n"]


def test_fuzz_modelfile_parser() -> None:
    @fuzz_settings()
    @given(hs.one_of(hs.lists(hs.sampled_from(_MF_WORDS), max_size=40).map("".join),
                     hs.text(max_size=200), hs.binary(max_size=200)))
    def prop(text: str | bytes) -> None:
        with example("modelfile"):
            try:
                mf = modelfile.parse(text)
                modelfile.to_request(mf)
            except (modelfile.ModelfileError, OllamaError):
                pass
    prop()


# ---------- Go templates ----------
_T_WORDS = ["{{", "}}", "{{-", "-}}", " ", ".", ".Messages", ".Prompt", ".System", "$", "$x",
            ":=", "=", "range", "if", "else", "end", "with", "printf", "len", "index", "slice",
            "eq", "and", "or", "not", "(", ")", "|", '"%5d"', '"%.3f"', '"%999999999d"', "1",
            "-1", "100000000", "$i, $m", "/*", "*/", "`", "'a'", "break", "continue", "json",
            ".Role", ".Content", "nil", "true", "text", "\n", "{{ end }}"]
_DATA = {"Messages": [{"Role": "user", "Content": "hi"}, {"Role": "assistant", "Content": "yo"}],
         "System": "s", "Prompt": "p", "Response": "", "Tools": [], "Think": False}
_TIGHT = Limits(max_output=100_000, max_steps=50_000, max_width=1000, max_depth=50,
                max_nodes=2000)


def test_fuzz_template_parser_and_renderer() -> None:
    @fuzz_settings()
    @given(hs.one_of(hs.lists(hs.sampled_from(_T_WORDS), max_size=60).map("".join),
                     hs.text(max_size=120)))
    def prop(src: str) -> None:
        with example("template"):
            try:
                t = parse(src, _TIGHT)
                t.render(dict(_DATA))
                t.render(dict(_DATA), t.until_response())
            except TemplateError:
                pass
    prop()


# ---------- manifests ----------
_digest = hs.one_of(hs.just("sha256:" + "a" * 64), hs.text(max_size=80),
                    hs.just("sha256:../../etc/passwd"), hs.just("sha256-" + "b" * 64))
_layer = hs.fixed_dictionaries({"digest": _digest},
                               optional={"mediaType": hs.text(max_size=40),
                                         "size": hs.one_of(hs.integers(), hs.floats(),
                                                           hs.text(max_size=5)),
                                         "from": hs.text(max_size=10)})
_json = hs.recursive(hs.none() | hs.booleans() | hs.integers() | hs.floats() |
                     hs.text(max_size=20),
                     lambda c: hs.lists(c, max_size=5) | hs.dictionaries(hs.text(max_size=8), c,
                                                                         max_size=5),
                     max_leaves=30)


def test_fuzz_manifest_readers() -> None:
    @fuzz_settings()
    @given(hs.one_of(
        hs.fixed_dictionaries({}, optional={"schemaVersion": _json, "layers": hs.lists(
            hs.one_of(_layer, _json), max_size=6), "config": hs.one_of(_layer, _json)}
                              ).map(lambda d: json.dumps(d).encode()),
        hs.binary(max_size=200)))
    def prop(data: bytes) -> None:
        with example("manifest"):
            for fn in (registry_manifest, st.parse_manifest):
                try:
                    fn(data)
                except OllamaError:
                    pass
    prop()


# ---------- request decoders ----------
_CAPS = Caps(max_json_bytes=1 << 20, max_json_objects=500, max_messages=20, max_images=4,
             max_embed_inputs=20)
_msg = hs.fixed_dictionaries({}, optional={"role": hs.one_of(hs.sampled_from(
    ["user", "assistant", "system", "tool"]), _json), "content": _json, "images": _json,
    "tool_calls": _json, "thinking": _json})
_body = hs.fixed_dictionaries({}, optional={
    "model": _json, "messages": hs.one_of(hs.lists(_msg, max_size=25), _json),
    "prompt": _json, "input": _json, "images": _json, "options": _json, "format": _json,
    "think": _json, "keep_alive": _json, "stream": _json, "tools": _json})


def test_fuzz_request_decoders() -> None:
    @fuzz_settings()
    @given(hs.one_of(_body.map(lambda d: json.dumps(d).encode()), hs.binary(max_size=120),
                     hs.text(max_size=120).map(str.encode)))
    def prop(body: bytes) -> None:
        with example("decode"):
            for cls in (ChatRequest, GenerateRequest, EmbedRequest):
                try:
                    decode(cls, body, _CAPS)
                except OllamaError:
                    pass
    prop()


# ---------- SSE lines (runner/sse_stream.py: the upstream stream decoder) ----------
_SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"


def _sse(chunks: list[bytes]) -> tuple[list[bytes], bool]:
    """Body lines the decoder queues for these reads (an unframed body that ends at EOF, as
    llama-server's `Connection: close` streams do), and whether it failed."""
    from ollamapy.runner.sse_stream import SSEProtocol

    loop = asyncio.new_event_loop()
    try:
        proto = SSEProtocol(loop)
        for c in [_SSE_HEAD, *chunks]:
            proto.data_received(c)
        proto.eof_received()
        return [x for x in proto.lines if x], proto.error is not None
    finally:
        loop.close()


def test_fuzz_sse_line_parser() -> None:
    """Any byte soup: no exception escapes the decoder, no line holds a newline, and how the
    reads cut the stream never changes the lines (a tag or an event split across reads)."""
    @fuzz_settings()
    @given(hs.lists(hs.one_of(hs.binary(max_size=40), hs.sampled_from(
        [b"\n", b"data: {}\n", b"data: ", b": ping\n", b"\r\n", b"\n\n"])), max_size=30))
    def prop(chunks: list[bytes]) -> None:
        with example("sse"):
            got, failed = _sse(chunks)
            whole, whole_failed = _sse([b"".join(chunks)] if chunks else [])
            assert failed == whole_failed
            if not failed:
                assert got == whole
                assert all(b"\n" not in x for x in got)
    prop()


def test_fuzz_counts_are_recorded() -> None:
    # runs last in this module: every target above ran inputs (a fuzzer that ran nothing is a
    # stub) and none crashed or hung
    r = report()
    for target in ("gguf", "modelfile", "template", "manifest", "decode", "sse"):
        assert r[target]["inputs"] > 0, r
        assert r[target]["crashes"] == 0 and r[target]["hangs"] == 0, r
