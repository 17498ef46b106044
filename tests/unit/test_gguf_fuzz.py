"""Hostile GGUF input: every malformed file is a clear GGUFError, never a crash/hang/huge alloc."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from ollamapy.gguf import GGUFError, parse_gguf, read_gguf
from tests.unit.test_gguf import write_fixture

Q = struct.Struct("<Q")


def header(n_tensors: int, n_kv: int, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<I", version) + Q.pack(n_tensors) + Q.pack(n_kv)


def kv_string(key: str, value: bytes, declared: int | None = None) -> bytes:
    k = key.encode()
    return Q.pack(len(k)) + k + struct.pack("<I", 8) + Q.pack(
        len(value) if declared is None else declared) + value


def parse(data: bytes) -> object:
    return parse_gguf(memoryview(data), len(data))


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_fixture(tmp_path_factory.mktemp("g") / "t.gguf", n_tokens=40).read_bytes()


@pytest.mark.parametrize(("data", "msg"), [
    (b"", "bad magic"),
    (b"GGML" + b"\0" * 20, "bad magic"),
    (b"GGUF" + struct.pack("<I", 9) + b"\0" * 16, "unsupported version"),
    (header(0, 1)[:-3], "unexpected end of file"),
    (header(0, 1 << 40), "kv count"),
    (header(1 << 40, 0), "tensor count"),
    (header(0, 1) + kv_string("a", b"x", declared=1 << 62), "exceeds file size"),
    (header(0, 1) + Q.pack(1) + b"a" + struct.pack("<I", 99), "unknown value type 99"),
    (header(0, 1) + Q.pack(1) + b"a" + struct.pack("<I", 9) + struct.pack("<I", 4)
     + Q.pack(1 << 60), "exceeds file size"),
    (header(0, 1) + Q.pack(1) + b"a" + struct.pack("<I", 9) + struct.pack("<I", 77)
     + Q.pack(1), "unknown array element type"),
    (header(0, 1) + Q.pack(17) + b"general.alignment" + struct.pack("<I", 4)
     + struct.pack("<I", 0), "invalid alignment 0"),
    (header(0, 1) + Q.pack(17) + b"general.alignment" + struct.pack("<I", 4)
     + struct.pack("<I", 3), "invalid alignment 3"),
    (header(1, 0) + Q.pack(1) + b"t" + struct.pack("<I", 9) + b"\0" * 32, "dimensions"),
    (header(1, 0) + Q.pack(1) + b"t" + struct.pack("<I", 1) + Q.pack(4)
     + struct.pack("<I", 200) + Q.pack(0) + b"\0" * 64, "unknown type 200"),
    (header(1, 0) + Q.pack(1) + b"t" + struct.pack("<I", 1) + Q.pack(1 << 40)
     + struct.pack("<I", 0) + Q.pack(0) + b"\0" * 64, "past end of file"),
    (header(1, 0) + Q.pack(1) + b"t" + struct.pack("<I", 1) + Q.pack(4)
     + struct.pack("<I", 0) + Q.pack(5) + b"\0" * 64, "not aligned"),
])
def test_malformed(data: bytes, msg: str) -> None:
    with pytest.raises(GGUFError, match=msg) as e:
        parse(data)
    assert str(e.value).startswith("invalid GGUF: ")


def test_nested_arrays_depth_bounded() -> None:
    body = (struct.pack("<I", 9) + Q.pack(1)) * 10  # array of array of array ...
    data = header(0, 1) + Q.pack(1) + b"a" + struct.pack("<I", 9) + body + b"\0" * 64
    with pytest.raises(GGUFError, match="nested too deeply"):
        parse(data)


def test_every_truncation_is_an_error(valid: bytes) -> None:
    parse(valid)
    step = max(1, len(valid) // 400)
    for cut in range(0, len(valid) - 1, step):
        with pytest.raises(GGUFError):
            parse(valid[:cut])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hs.data())
def test_random_corruption_never_crashes(valid: bytes, data: hs.DataObject) -> None:
    buf = bytearray(valid)
    for _ in range(data.draw(hs.integers(1, 8))):
        i = data.draw(hs.integers(0, min(len(buf) - 1, 2048)))
        buf[i] = data.draw(hs.integers(0, 255))
    try:
        g = parse(bytes(buf))
    except GGUFError:
        return
    for t in g.tensors:  # whatever parsed is self-consistent
        assert g.data_offset + t.offset + t.n_bytes <= len(buf)


@settings(max_examples=300, deadline=None)
@given(hs.binary(max_size=512))
def test_random_bytes(blob: bytes) -> None:
    try:
        parse(b"GGUF" + blob)
    except GGUFError:
        pass


def test_file_truncated_on_disk(valid: bytes, tmp_path: Path) -> None:
    p = tmp_path / "cut.gguf"
    p.write_bytes(valid[: len(valid) - 100])
    with pytest.raises(GGUFError, match="past end of file"):
        read_gguf(p)


def test_materialised_metadata_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many short arrays (and arrays nested in arrays) cost memory per element whatever the
    file size: past the element budget arrays are skipped lazily, past the string budget the
    file is refused, and model_info stays JSON-serialisable either way."""
    import json

    import ollamapy.gguf as g

    monkeypatch.setattr(g, "MAX_ELEMENTS", 3000)
    monkeypatch.setattr(g, "MAX_STRING_BYTES", 4096)
    u32_array = struct.pack("<I", 9) + struct.pack("<I", 4) + Q.pack(1000) + b"\1\0\0\0" * 1000
    kvs = b"".join(Q.pack(2) + f"a{i}".encode() + u32_array for i in range(5))
    nested = (Q.pack(6) + b"nested" + struct.pack("<I", 9) + struct.pack("<I", 9) + Q.pack(2)
              + (struct.pack("<I", 4) + Q.pack(1000) + b"\0" * 4000) * 2)
    data = header(0, 6) + kvs + nested + b"\0" * 64
    f = parse(data)
    kept = [k for k, v in f.kv.items() if isinstance(v, list)]
    assert kept == ["a0", "a1", "a2"]  # 3000 elements, then skipped
    assert all(isinstance(f.kv[k], g.SkippedArray) for k in ("a3", "a4", "nested"))
    json.dumps(g.model_info(f))
    big = header(0, 1) + kv_string("t", b"x" * 5000) + b"\0" * 64
    with pytest.raises(GGUFError, match="metadata strings exceed"):
        parse(big)


def test_arrays_nested_in_a_kept_array_stay_serialisable() -> None:
    import json

    import ollamapy.gguf as g

    inner_long = struct.pack("<I", 4) + Q.pack(2000) + b"\0" * 8000
    inner_short = struct.pack("<I", 4) + Q.pack(2) + b"\0" * 8
    data = (header(0, 1) + Q.pack(1) + b"n" + struct.pack("<I", 9) + struct.pack("<I", 9)
            + Q.pack(2) + inner_short + inner_long + b"\0" * 64)
    f = parse(data)
    assert f.kv["n"][0] == [0, 0] and isinstance(f.kv["n"][1], g.SkippedArray)
    assert json.loads(json.dumps(g.model_info(f)))["n"] == [[0, 0], []]
