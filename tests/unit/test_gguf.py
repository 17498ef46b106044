"""GGUF reader: facts from files written by the reference `gguf` package, and the real model."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import gguf as ref
import numpy as np
import pytest

from ollamapy.gguf import (
    FILE_TYPES,
    GGML_TYPES,
    GGUFError,
    SkippedArray,
    human_number,
    model_info,
    read_gguf,
)


def write_fixture(path: Path, *, n_tokens: int = 10, template: str | None = "{{ messages }}",
                  pooling: bool = False, alignment: int | None = None,
                  arch: str = "llama", pooling_type: int | None = None) -> Path:
    w = ref.GGUFWriter(str(path), arch)
    w.add_name("tiny")
    w.add_block_count(2)
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_file_type(ref.LlamaFileType.MOSTLY_F16)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"tok{i}" for i in range(n_tokens)])
    w.add_token_types([1] * n_tokens)
    if template is not None:
        w.add_chat_template(template)
    if pooling or pooling_type is not None:
        w.add_pooling_type(ref.PoolingType(pooling_type) if pooling_type is not None
                           else ref.PoolingType.MEAN)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    w.add_tensor("token_embd.weight", np.zeros((n_tokens, 64), dtype=np.float16))
    w.add_tensor("blk.0.attn_q.weight", np.ones((64, 64), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_reads_reference_fixture(tmp_path: Path) -> None:
    p = write_fixture(tmp_path / "t.gguf")
    g = read_gguf(p)
    assert g.version == 3
    assert g.architecture == "llama"
    assert (g.block_count, g.context_length, g.embedding_length) == (2, 256, 64)
    assert (g.head_count, g.head_count_kv) == (4, 2)
    assert g.file_type == "F16"
    assert g.chat_template == "{{ messages }}"
    assert g.tokenizer_model == "gpt2"
    assert g.vocab_size == 10
    assert g.kv["llama.attention.layer_norm_rms_epsilon"] == 1e-5
    names = {t.name: t for t in g.tensors}
    assert names["token_embd.weight"].shape == (64, 10)
    assert names["token_embd.weight"].type_name == "F16"
    assert names["blk.0.attn_q.weight"].type_name == "F32"
    assert g.parameter_count == 64 * 10 + 64 * 64
    # Tensor data lies inside the file, aligned.
    for t in g.tensors:
        assert (g.data_offset + t.offset) % g.alignment == 0
        assert g.data_offset + t.offset + t.n_bytes <= p.stat().st_size
    assert not g.is_embedding


def test_long_arrays_are_skipped_lazily(tmp_path: Path) -> None:
    p = write_fixture(tmp_path / "t.gguf", n_tokens=5000)
    g = read_gguf(p)
    toks = g.kv["tokenizer.ggml.tokens"]
    assert isinstance(toks, SkippedArray) and len(toks) == 5000
    assert g.vocab_size == 5000
    info = model_info(g)
    assert info["tokenizer.ggml.tokens"] == []
    assert "general.name" not in info and "tokenizer.chat_template" not in info
    full = model_info(g, verbose=True)
    assert full["tokenizer.ggml.tokens"][:2] == ["tok0", "tok1"]
    assert len(full["tokenizer.ggml.token_type"]) == 5000


def test_short_arrays_shown_long_ones_blanked(tmp_path: Path) -> None:
    g = read_gguf(write_fixture(tmp_path / "t.gguf", n_tokens=5))
    assert model_info(g)["tokenizer.ggml.tokens"] == [f"tok{i}" for i in range(5)]
    g = read_gguf(write_fixture(tmp_path / "u.gguf", n_tokens=6))
    assert model_info(g)["tokenizer.ggml.tokens"] == []


def test_embedding_and_alignment(tmp_path: Path) -> None:
    g = read_gguf(write_fixture(tmp_path / "t.gguf", pooling=True, alignment=64))
    assert g.is_embedding
    assert g.alignment == 64 and g.data_offset % 64 == 0


def test_type_tables_match_reference() -> None:
    for qt, (block, size) in ref.GGML_QUANT_SIZES.items():
        assert GGML_TYPES[int(qt)][1:] == (block, size), qt
        assert GGML_TYPES[int(qt)][0] == qt.name
    for ft in ref.LlamaFileType:
        if int(ft) in FILE_TYPES:
            assert ft.name.endswith(FILE_TYPES[int(ft)].replace("MXFP4", "MXFP4_MOE")), ft


def test_v2_header(tmp_path: Path) -> None:
    p = write_fixture(tmp_path / "t.gguf")
    data = bytearray(p.read_bytes())
    data[4:8] = struct.pack("<I", 2)  # v2 has the same layout with 64-bit lengths
    q = tmp_path / "v2.gguf"
    q.write_bytes(bytes(data))
    assert read_gguf(q).version == 2


@pytest.mark.parametrize(("n", "s"), [(134515008, "134.52M"), (8_000_000_000, "8B"),
                                      (8_030_261_248, "8.0B"), (494_032_768, "494.03M"),
                                      (7_000_000, "7M"), (1500, "2K"), (999, "999")])
def test_human_number(n: int, s: str) -> None:
    assert human_number(n) == s


def test_real_model(model_path: Path) -> None:
    t = time.perf_counter()
    g = read_gguf(model_path)
    elapsed = time.perf_counter() - t
    assert g.architecture == "llama"
    assert g.block_count == 30 and g.context_length == 8192
    assert g.file_type == "Q4_1"
    assert human_number(g.parameter_count) == "134.52M"
    assert "<|im_start|>" in (g.chat_template or "")
    assert len(g.tensors) == 272
    assert elapsed < 1.0  # metadata only: never the 98 MB of weights


def test_not_gguf(tmp_path: Path) -> None:
    p = tmp_path / "x.bin"
    p.write_bytes(b"hello world, not a model")
    with pytest.raises(GGUFError, match="invalid GGUF: bad magic"):
        read_gguf(p)


def test_device_and_directory_rejected(tmp_path: Path) -> None:
    with pytest.raises(GGUFError, match="not a regular file"):
        read_gguf("/dev/zero")
    with pytest.raises(GGUFError):
        read_gguf(tmp_path)


@pytest.mark.timeout(10)
def test_fifo_is_rejected_without_blocking(tmp_path: Path) -> None:
    """A FIFO planted where a blob should be: opening it must not wait for a writer."""
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(GGUFError, match="not a regular file"):
        read_gguf(fifo)


def test_big_endian(tmp_path: Path) -> None:
    p = tmp_path / "be.gguf"
    w = ref.GGUFWriter(str(p), "llama", endianess=ref.GGUFEndian.BIG)
    w.add_block_count(2)
    w.add_context_length(77)
    w.add_token_list(["a", "b"])
    w.add_tensor("x", np.ones((4, 32), dtype=np.float32).byteswap().view(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    g = read_gguf(p)
    assert (g.byteorder, g.context_length, g.block_count) == (">", 77, 2)
    assert g.kv["tokenizer.ggml.tokens"] == ["a", "b"]
    assert g.tensors[0].shape == (32, 4)


def test_multi_gb_file_reads_in_milliseconds(tmp_path: Path) -> None:
    """Only the header is touched: a (sparse) 4 GiB model's metadata reads instantly."""
    q = struct.Struct("<Q")
    key, arch = b"general.architecture", b"llama"
    head = (b"GGUF" + struct.pack("<I", 3) + q.pack(1) + q.pack(1)
            + q.pack(len(key)) + key + struct.pack("<I", 8) + q.pack(len(arch)) + arch
            + q.pack(len(b"w")) + b"w" + struct.pack("<I", 1) + q.pack(1 << 30)
            + struct.pack("<I", 0) + q.pack(0))
    data_offset = -(-len(head) // 32) * 32
    p = tmp_path / "big.gguf"
    with p.open("wb") as f:
        f.write(head)
        f.truncate(data_offset + (4 << 30))
    t = time.perf_counter()
    g = read_gguf(p)
    assert time.perf_counter() - t < 0.05
    assert g.tensors[0].n_bytes == 4 << 30 and g.parameter_count == 1 << 30
