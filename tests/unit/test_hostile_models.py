"""Hostile manifests and GGUFs (issue 11): layer counts, text-layer totals and verbose GGUF arrays
are bounded, so a crafted store entry cannot make /api/tags or /api/show allocate GBs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import gguf as ref
import numpy as np
import pytest

from ollamapy.errors import OllamaError
from ollamapy.gguf import SkippedArray, model_info, read_gguf
from ollamapy.store import store as st
from ollamapy.store.manifest import parse_manifest as registry_parse
from tests.unit.test_gguf import write_fixture


def _blob(root: Path, data: bytes) -> str:
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / d.replace(":", "-")).write_bytes(data)
    return d


def _store_with(tmp_path: Path, layers: list[dict[str, object]]) -> st.ModelStore:
    store = st.ModelStore(tmp_path / "models")
    g = write_fixture(tmp_path / "t.gguf").read_bytes()
    gd = _blob(store.root, g)
    manifest = {"schemaVersion": 2, "mediaType": st.MEDIA_MANIFEST,
                "layers": [{"mediaType": st.MEDIA_MODEL, "digest": gd, "size": len(g)},
                           *layers]}
    mdir = store.root / "manifests/registry.ollama.ai/library/evil"
    mdir.mkdir(parents=True)
    (mdir / "latest").write_text(json.dumps(manifest))
    return store


def test_many_license_layers_on_one_blob_are_refused(tmp_path: Path) -> None:
    store0 = st.ModelStore(tmp_path / "models")
    lic = _blob(store0.root, b"L" * 1_000_000)
    layer = {"mediaType": st.MEDIA_LICENSE, "digest": lic, "size": 1_000_000}
    store = _store_with(tmp_path, [layer] * 1000)  # was: 1000 x 1 MB read per /api/tags
    [e] = store.list_models()
    with pytest.raises(OllamaError, match=r"too large|exceed"):
        store.model_from_entry(e)


def test_text_layers_within_budget_still_resolve(tmp_path: Path) -> None:
    store0 = st.ModelStore(tmp_path / "models")
    lic = _blob(store0.root, b"MIT")
    store = _store_with(tmp_path, [{"mediaType": st.MEDIA_LICENSE, "digest": lic,
                                    "size": 3}] * 3)
    assert store.resolve("evil").license == ("MIT",) * 3


def test_layer_count_is_capped_in_the_store(tmp_path: Path) -> None:
    store0 = st.ModelStore(tmp_path / "models")
    lic = _blob(store0.root, b"MIT")
    store = _store_with(tmp_path, [{"mediaType": st.MEDIA_LICENSE, "digest": lic,
                                    "size": 3}] * 5000)
    assert store.list_models() == []  # skipped as a bad manifest, with a log line
    with pytest.raises(OllamaError, match="more than 1024 layers"):
        st.parse_manifest((store.root / "manifests/registry.ollama.ai/library/evil/latest")
                          .read_bytes())


def test_layer_count_is_capped_for_pulled_manifests(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = {"mediaType": st.MEDIA_LICENSE, "digest": "sha256:" + "a" * 64, "size": 3}
    data = json.dumps({"schemaVersion": 2, "layers": [layer] * 2000}).encode()
    with pytest.raises(OllamaError, match="more than 1024 layers"):
        registry_parse(data)
    monkeypatch.setenv("OLLAMAPY_MAX_MANIFEST_LAYERS", "5000")
    assert len(registry_parse(data).layers) == 2000


def _gguf_with_array(path: Path, n: int) -> Path:
    w = ref.GGUFWriter(str(path), "llama")
    w.add_array("evil.array", list(range(n)))
    w.add_tensor("t", np.zeros((4,), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_verbose_show_cuts_long_arrays(tmp_path: Path) -> None:
    g = read_gguf(_gguf_with_array(tmp_path / "a.gguf", 50_000))
    assert isinstance(g.kv["evil.array"], SkippedArray)
    info = model_info(g, verbose=True, max_array=1000)
    assert info["evil.array"] == list(range(1000))
    assert model_info(g, verbose=False)["evil.array"] == []
    assert model_info(g, verbose=True, max_array=100_000)["evil.array"] == list(range(50_000))


def test_verbose_show_total_budget_across_arrays(tmp_path: Path) -> None:
    w = ref.GGUFWriter(str(tmp_path / "b.gguf"), "llama")
    for i in range(20):
        w.add_array(f"evil.a{i}", [1] * 5000)
    w.add_tensor("t", np.zeros((4,), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    info = model_info(read_gguf(tmp_path / "b.gguf"), verbose=True, max_array=2000)
    total = sum(len(v) for k, v in info.items() if k.startswith("evil."))
    assert total == 4 * 2000
