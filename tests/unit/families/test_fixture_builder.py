"""The family fixture builder: GGUF copies with another chat template, Ollama-style manifests
with RENDERER/PARSER/TEMPLATE that the store reads back."""

from __future__ import annotations

from pathlib import Path

import gguf as ggufpkg
import numpy as np

from ollamapy.gguf import read_gguf
from ollamapy.inference.capabilities import capabilities, facts_from
from ollamapy.store.store import ModelStore
from tests.families_fixture import (
    FAMILIES,
    QWEN3_JINJA,
    copy_with_chat_template,
    write_family_model,
)


def tiny_gguf(path: Path, chat_template: str | None = "{{ messages }}") -> Path:
    w = ggufpkg.GGUFWriter(path, arch="llama")
    w.add_context_length(64)
    w.add_uint32("llama.block_count", 1)
    if chat_template is not None:
        w.add_chat_template(chat_template)
    w.add_tensor("token_embd.weight", np.arange(32, dtype=np.float32).reshape(4, 8))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_copy_swaps_and_removes_chat_template(tmp_path: Path) -> None:
    src = tiny_gguf(tmp_path / "src.gguf")
    out = copy_with_chat_template(src, tmp_path / "q.gguf", QWEN3_JINJA)
    g = read_gguf(out)
    assert g.chat_template == QWEN3_JINJA
    assert g.architecture == "llama" and g.context_length == 64
    assert [t.name for t in g.tensors] == ["token_embd.weight"]
    r = ggufpkg.GGUFReader(out)
    assert r.tensors[0].data.tolist() == np.arange(32, dtype=np.float32).reshape(4, 8).tolist()
    gone = copy_with_chat_template(src, tmp_path / "none.gguf", None)
    assert read_gguf(gone).chat_template is None


def test_family_manifest_reads_back_through_the_store(tmp_path: Path) -> None:
    src = tiny_gguf(tmp_path / "src.gguf")
    models = tmp_path / "models"
    name = write_family_model(models, "fam/qwen3-coder:test", src, FAMILIES["qwen3-coder"])
    m = ModelStore(models).resolve(name)
    assert m.template == "{{ .Prompt }}"
    assert m.config["renderer"] == "qwen3-coder" and m.config["parser"] == "qwen3-coder"
    kv = read_gguf(m.model_path).kv
    caps = capabilities(facts_from(kv, m.template, [], m.config))
    assert set(caps) == {"completion", "tools"}


def test_gemma_fixture_copy(tmp_path: Path, gemma_path: Path) -> None:
    path = gemma_path
    out = copy_with_chat_template(path, tmp_path / "gemma-qwen.gguf", QWEN3_JINJA)
    g = read_gguf(out)
    assert g.chat_template == QWEN3_JINJA and g.architecture == "gemma3"
    assert len(g.tensors) == len(read_gguf(path).tensors)


def test_model_capabilities_is_a_drop_in_for_the_store(tmp_path: Path) -> None:
    from ollamapy.inference.capabilities import model_capabilities

    src = tiny_gguf(tmp_path / "src.gguf", chat_template="{% if tools %}{{ tools }}{% endif %}")
    g = read_gguf(src)
    assert model_capabilities(g, None, [], {}) == ["tools", "completion"]
    assert model_capabilities(g, "{{ .Prompt }}", [], {"parser": "qwen3.5"}) == [
        "completion", "tools", "thinking"]
    proj = tiny_gguf(tmp_path / "proj.gguf", chat_template=None)
    # the GGUF template does more than `{{ .Prompt }}`, so (like Ollama) it is the one used
    assert model_capabilities(g, "{{ .Prompt }}", [proj, tmp_path / "missing.gguf"], {}) == [
        "tools", "completion", "vision"]
    assert model_capabilities(None, None, [], {}) == []
