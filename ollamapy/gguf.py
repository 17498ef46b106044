"""A bounded GGUF reader: header, metadata KV and tensor infos, never the tensor data.

The file is memory-mapped and every read is checked against the file length before it happens,
so a hostile file (truncated, huge string/array lengths, unknown types, tensors past EOF, zero
alignment) raises `GGUFError("invalid GGUF: ...")` instead of crashing, hanging or allocating
unboundedly. Arrays longer than `max_array` are skipped lazily (recorded as `SkippedArray`).
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ollamapy.inference.jsontypes import JsonObject

_T = TypeVar("_T")

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
MAX_NESTING = 4
DEFAULT_MAX_ARRAY = 1024
POOLING_RANK = 4  # llama.cpp LLAMA_POOLING_TYPE_RANK
MAX_KV = 1 << 20
MAX_TENSORS = 1 << 20
# Metadata a parse may materialise, whatever the file size: array elements kept as Python values
# (more are skipped lazily like long arrays) and string bytes (more is an error). Real models
# use a few thousand elements and well under 1 MiB of strings (chat templates included).
MAX_ELEMENTS = 1 << 22
MAX_STRING_BYTES = 64 << 20

# GGUF value types
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = (
    range(13))
_SCALAR = {
    UINT8: ("B", 1), INT8: ("b", 1), UINT16: ("H", 2), INT16: ("h", 2), UINT32: ("I", 4),
    INT32: ("i", 4), FLOAT32: ("f", 4), BOOL: ("?", 1), UINT64: ("Q", 8), INT64: ("q", 8),
    FLOAT64: ("d", 8),
}

# ggml tensor types: id -> (name, block size in elements, bytes per block)
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4),
    27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}

# llama_ftype (general.file_type) -> Ollama's name
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4",
    39: "NVFP4", 40: "Q1_0",
}


class GGUFError(ValueError):
    """A malformed or unsupported GGUF file; the message starts with 'invalid GGUF: '."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid GGUF: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class SkippedArray:
    """An array too long to materialise (token lists): its element type and length only."""

    type: int
    count: int
    offset: int

    def __len__(self) -> int:
        return self.count


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type: int
    offset: int      # relative to the start of the tensor data section

    @property
    def type_name(self) -> str:
        return GGML_TYPES[self.type][0]

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def n_bytes(self) -> int:
        _, block, size = GGML_TYPES[self.type]
        return self.n_elements // block * size


@dataclass
class GGUFFile:
    path: Path
    version: int
    byteorder: str
    kv: JsonObject
    tensors: list[TensorInfo] = field(default_factory=list)
    alignment: int = DEFAULT_ALIGNMENT
    data_offset: int = 0
    file_size: int = 0

    # --- convenience accessors (Ollama's KV helpers prefix keys with the architecture) ---
    @property
    def architecture(self) -> str:
        v = self.kv.get("general.architecture")
        return v if isinstance(v, str) else "unknown"

    @property
    def general_type(self) -> str:
        v = self.kv.get("general.type")
        return v if isinstance(v, str) else "model"

    def arch_value(self, key: str, default: Any = None) -> Any:
        return self.kv.get(f"{self.architecture}.{key}", default)

    @property
    def parameter_count(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def file_type(self) -> str:
        v = self.kv.get("general.file_type")
        return FILE_TYPES.get(v, "unknown") if isinstance(v, int) else "unknown"

    @property
    def context_length(self) -> int | None:
        return _int_or_none(self.arch_value("context_length"))

    @property
    def block_count(self) -> int | None:
        return _int_or_none(self.arch_value("block_count"))

    @property
    def embedding_length(self) -> int | None:
        return _int_or_none(self.arch_value("embedding_length"))

    @property
    def head_count(self) -> int | None:
        return _first_int(self.arch_value("attention.head_count"))

    @property
    def head_count_kv(self) -> int | None:
        v = _first_int(self.arch_value("attention.head_count_kv"))
        return v if v is not None else self.head_count

    @property
    def chat_template(self) -> str | None:
        v = self.kv.get("tokenizer.chat_template")
        return v if isinstance(v, str) else None

    @property
    def tokenizer_model(self) -> str | None:
        v = self.kv.get("tokenizer.ggml.model")
        return v if isinstance(v, str) else None

    @property
    def vocab_size(self) -> int | None:
        v = self.kv.get("tokenizer.ggml.tokens")
        return len(v) if isinstance(v, (list, SkippedArray)) else None

    @property
    def is_embedding(self) -> bool:
        return f"{self.architecture}.pooling_type" in self.kv

    @property
    def is_reranker(self) -> bool:
        """pooling_type 4 (LLAMA_POOLING_TYPE_RANK): a cross-encoder that scores pairs."""
        return self.kv.get(f"{self.architecture}.pooling_type") == POOLING_RANK


def _int_or_none(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _first_int(v: Any) -> int | None:
    if isinstance(v, list):
        ints = [x for x in v if isinstance(x, int)]
        return max(ints) if ints else None
    return _int_or_none(v)


class _Reader:
    """Cursor over a buffer; every read is bounds-checked first."""

    def __init__(self, buf: Any, size: int, order: str, version: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0
        self.order = order
        self.len_fmt = order + ("I" if version == 1 else "Q")
        self.len_size = 4 if version == 1 else 8
        self.elements = MAX_ELEMENTS  # what is left of the materialisation budgets
        self.string_bytes = MAX_STRING_BYTES

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise GGUFError(f"unexpected end of file reading {what}")

    def scalar(self, vtype: int, what: str) -> Any:
        fmt, n = _SCALAR[vtype]
        self.need(n, what)
        (v,) = struct.unpack_from(self.order + fmt, self.buf, self.pos)
        self.pos += n
        return shortest_float32(v) if vtype == FLOAT32 else v

    def u32(self, what: str) -> int:
        v: int = self.scalar(UINT32, what)
        return v

    def u64(self, what: str) -> int:
        v: int = self.scalar(UINT64, what)
        return v

    def length(self, what: str) -> int:
        self.need(self.len_size, what)
        v: int = struct.unpack_from(self.len_fmt, self.buf, self.pos)[0]
        self.pos += self.len_size
        return v

    def string(self, what: str) -> str:
        n = self.length(what)
        if n > self.size - self.pos:
            raise GGUFError(f"{what} length {n} exceeds file size")
        if n > self.string_bytes:
            raise GGUFError(f"{what}: metadata strings exceed {MAX_STRING_BYTES} bytes")
        self.string_bytes -= n
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int, what: str, max_array: int, depth: int = 0) -> Any:
        if vtype in _SCALAR:
            return self.scalar(vtype, what)
        if vtype == STRING:
            return self.string(what)
        if vtype == ARRAY:
            if depth >= MAX_NESTING:
                raise GGUFError(f"{what}: arrays nested too deeply")
            etype = self.u32(what)
            count = self.length(what)
            start = self.pos
            min_size = _min_elem_size(etype, self.len_size)
            if min_size is None:
                raise GGUFError(f"{what}: unknown array element type {etype}")
            if count * min_size > self.size - self.pos:
                raise GGUFError(f"{what}: array length {count} exceeds file size")
            if count > max_array or count > self.elements:
                self.skip_array(etype, count, what, depth)
                return SkippedArray(etype, count, start)
            self.elements -= count
            if etype in _SCALAR:
                fmt, n = _SCALAR[etype]
                vals = list(struct.unpack_from(f"{self.order}{count}{fmt}", self.buf, self.pos))
                self.pos += n * count
                return [shortest_float32(v) for v in vals] if etype == FLOAT32 else vals
            return [self.value(etype, what, max_array, depth + 1) for _ in range(count)]
        raise GGUFError(f"{what}: unknown value type {vtype}")

    def skip_array(self, etype: int, count: int, what: str, depth: int) -> None:
        if etype in _SCALAR:
            n = _SCALAR[etype][1] * count
            self.need(n, what)
            self.pos += n
        elif etype == STRING:
            unpack, buf, ls, size = struct.Struct(self.len_fmt).unpack_from, self.buf, \
                self.len_size, self.size
            pos = self.pos
            for _ in range(count):
                if pos + ls > size:
                    raise GGUFError(f"unexpected end of file reading {what}")
                (n,) = unpack(buf, pos)
                pos += ls + n
                if pos > size:
                    raise GGUFError(f"{what}: string length {n} exceeds file size")
            self.pos = pos
        else:
            for _ in range(count):
                self.value(etype, what, 0, depth + 1)


def shortest_float32(v: float) -> float:
    """The shortest decimal that round-trips as float32 (what Go prints for a float32 KV)."""
    if v != v or v in (float("inf"), float("-inf")):
        return v
    packed = struct.pack("<f", v)
    for digits in range(1, 10):
        c = float(f"{v:.{digits}g}")
        if struct.pack("<f", c) == packed:
            return c
    return v


def _min_elem_size(etype: int, len_size: int) -> int | None:
    if etype in _SCALAR:
        return _SCALAR[etype][1]
    if etype == STRING:
        return len_size
    if etype == ARRAY:
        return 4 + len_size
    return None


def read_array(path: str | os.PathLike[str], arr: SkippedArray, version: int = 3,
               byteorder: str = "<", limit: int | None = None) -> list[Any]:
    """Materialise a skipped array (e.g. tokenizer tokens for `show --verbose`), at most its
    first `limit` elements (a crafted file can declare billions)."""
    count = arr.count if limit is None else min(arr.count, max(limit, 0))

    def parse(r: _Reader) -> list[Any]:
        r.pos = arr.offset
        if arr.type in _SCALAR:
            fmt, n = _SCALAR[arr.type]
            r.need(n * count, "array")
            return list(struct.unpack_from(f"{byteorder}{count}{fmt}", r.buf, r.pos))
        return [r.value(arr.type, "array", 0, 1) for _ in range(count)]
    return _with_map(Path(path), lambda buf, size: parse(_Reader(buf, size, byteorder, version)))


def _with_map(path: Path, fn: Callable[[mmap.mmap, int], _T]) -> _T:
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise GGUFError(f"cannot open file: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise GGUFError("not a regular file")
        size = st.st_size
        if size < 8:
            raise GGUFError("file too small")
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm:
            return fn(mm, size)
    finally:
        os.close(fd)


def read_gguf(path: str | os.PathLike[str], *, max_array: int = DEFAULT_MAX_ARRAY,
              tensors: bool = True) -> GGUFFile:
    """Read header, KV and (optionally) tensor infos of a GGUF file, bounds-checked."""
    p = Path(path)
    return _with_map(p, lambda buf, size: parse_gguf(buf, size, p, max_array=max_array,
                                                     tensors=tensors))


def parse_gguf(buf: Any, size: int, path: Path = Path("<memory>"), *,
               max_array: int = DEFAULT_MAX_ARRAY, tensors: bool = True) -> GGUFFile:
    """Parse a GGUF image held in `buf` (bytes, memoryview or mmap) of `size` bytes."""
    if size < 8 or bytes(buf[0:4]) != MAGIC:
        raise GGUFError("bad magic")
    (version,) = struct.unpack_from("<I", buf, 4)
    order = "<"
    if version not in (1, 2, 3):
        (swapped,) = struct.unpack_from(">I", buf, 4)
        if swapped in (2, 3):
            version, order = swapped, ">"
        else:
            raise GGUFError(f"unsupported version {version}")
    r = _Reader(buf, size, order, version)
    r.pos = 8
    n_tensors = r.length("tensor count")
    n_kv = r.length("kv count")
    if n_kv > MAX_KV or n_kv * (r.len_size + 4) > size:
        raise GGUFError(f"kv count {n_kv} too large")
    if n_tensors > MAX_TENSORS or n_tensors * (r.len_size + 4 + 4 + 8) > size:
        raise GGUFError(f"tensor count {n_tensors} too large")
    kv: JsonObject = {}
    for i in range(n_kv):
        key = r.string(f"kv key {i}")
        vtype = r.u32(f"type of {key!r}")
        kv[key] = r.value(vtype, repr(key), max_array)
    alignment = kv.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0 \
            or alignment & (alignment - 1):
        raise GGUFError(f"invalid alignment {alignment!r}")
    g = GGUFFile(path=path, version=version, byteorder=order, kv=kv, alignment=alignment,
                 file_size=size)
    if not tensors:
        return g
    infos: list[TensorInfo] = []
    for i in range(n_tensors):
        name = r.string(f"tensor {i} name")
        n_dims = r.u32(f"tensor {name!r} dims")
        if n_dims > MAX_DIMS:
            raise GGUFError(f"tensor {name!r} has {n_dims} dimensions")
        shape = tuple(r.u64(f"tensor {name!r} shape") for _ in range(n_dims))
        ttype = r.u32(f"tensor {name!r} type")
        offset = r.u64(f"tensor {name!r} offset")
        if ttype not in GGML_TYPES:
            raise GGUFError(f"tensor {name!r} has unknown type {ttype}")
        info = TensorInfo(name, shape, ttype, offset)
        block = GGML_TYPES[ttype][1]
        if info.n_elements % block:
            raise GGUFError(f"tensor {name!r} shape is not a multiple of its block size")
        if offset % alignment:
            raise GGUFError(f"tensor {name!r} offset is not aligned")
        infos.append(info)
    data_offset = -(-r.pos // alignment) * alignment
    for t in infos:
        if data_offset + t.offset + t.n_bytes > size:
            raise GGUFError(f"tensor {t.name!r} data extends past end of file")
    g.tensors = infos
    g.data_offset = data_offset
    return g


def human_number(n: int) -> str:
    """Ollama's format.HumanNumber: 134515008 -> '134.52M', 8000000000 -> '8B'."""
    if n >= 1_000_000_000:
        v = n / 1_000_000_000
        return f"{v:.0f}B" if v == int(v) else f"{v:.1f}B"
    if n >= 1_000_000:
        v = n / 1_000_000
        return f"{v:.0f}M" if v == int(v) else f"{v:.2f}M"
    if n >= 1000:
        return f"{n / 1000:.0f}K"
    return str(n)


SHOW_ARRAYS_AT_FULL_LENGTH = 4  # the element budget of one verbose show, in max-array units


def model_info(g: GGUFFile, *, verbose: bool = False, max_array: int | None = None
               ) -> JsonObject:
    """Ollama's show `model_info`: all KV except general.name/tokenizer.chat_template; arrays
    longer than 5 become [] unless verbose; general.parameter_count from the tensors.
    Verbose arrays are cut at `max_array` elements (OLLAMAPY_SHOW_MAX_ARRAY) and all of them
    together at 4x that: what is materialised (and JSON-encoded, which holds the GIL) is
    bounded whatever the file declares."""
    if max_array is None:
        from ollamapy.config import read_setting

        max_array = int(read_setting("OLLAMAPY_SHOW_MAX_ARRAY"))
    budget = max_array * SHOW_ARRAYS_AT_FULL_LENGTH
    out: JsonObject = {}
    for k, v in g.kv.items():
        if k in ("general.name", "tokenizer.chat_template"):
            continue
        if isinstance(v, SkippedArray):
            take = min(v.count, max_array, budget)
            budget -= take
            v = read_array(g.path, v, g.version, g.byteorder, limit=take) if verbose else []
        elif isinstance(v, list) and len(v) > 5 and not verbose:
            v = []
        out[k] = _plain(v)
    if g.tensors:
        out["general.parameter_count"] = g.parameter_count
    return out


def _plain(v: Any) -> Any:
    """JSON-ready: an array nested in an array that was too long to keep shows as []."""
    if isinstance(v, SkippedArray):
        return []
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v
