"""Model-management API against a real `ollamapy serve`, through the official clients."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from tests.conftest import (
    ServerProc,
    register_default_model,
    running_server,
    start_server,
    stop_server,
)
from tests.unit.test_gguf import write_fixture

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    with running_server(tmp_path_factory.mktemp("models_api")) as s:
        yield s


@pytest.fixture
def http(srv: ServerProc) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        yield c


@pytest.fixture
def client(srv: ServerProc) -> ollama.Client:
    return ollama.Client(host=srv.url)


def files_outside(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and "models" not in p.parts}


def test_list_and_show_default_model(client: ollama.Client) -> None:
    names = [m.model for m in client.list().models]
    assert "smollm2:135m" in names
    m = next(m for m in client.list().models if m.model == "smollm2:135m")
    assert m.size > 90_000_000 and len(m.digest or "") == 64
    assert m.details and m.details.family == "llama" and m.details.format == "gguf"
    assert m.details.parameter_size == "134.52M" and m.details.quantization_level == "Q4_1"
    sh = client.show("smollm2:135m")
    assert sh.capabilities == ["completion"]
    assert sh.modelinfo is not None
    assert sh.modelinfo["general.architecture"] == "llama"
    assert sh.modelinfo["llama.context_length"] == 8192
    assert sh.modelinfo["general.parameter_count"] == 134515008
    assert sh.modelinfo["tokenizer.ggml.tokens"] == []       # big arrays omitted
    assert "tokenizer.chat_template" not in sh.modelinfo
    assert sh.modelfile and "FROM " in sh.modelfile and "# FROM smollm2:135m" in sh.modelfile
    assert sh.modified_at is not None


def test_show_verbose_and_case_insensitive(http: httpx.Client) -> None:
    r = http.post("/api/show", json={"model": "SmolLM2:135M", "verbose": True})
    assert r.status_code == 200
    body = r.json()
    assert len(body["model_info"]["tokenizer.ggml.tokens"]) == 49152
    assert len(body["tensors"]) == 272
    assert {"name", "type", "shape"} <= set(body["tensors"][0])


def test_blob_upload_create_copy_delete(client: ollama.Client, http: httpx.Client,
                                        srv: ServerProc, tmp_path: Path) -> None:
    g = write_fixture(tmp_path / "tiny.gguf")
    digest = client.create_blob(g)
    assert digest == "sha256:" + hashlib.sha256(g.read_bytes()).hexdigest()
    assert http.head(f"/api/blobs/{digest}").status_code == 200
    assert http.post(f"/api/blobs/{digest}", content=b"ignored").status_code == 200
    r = client.create(model="tiny:1", files={"tiny.gguf": digest}, system="short answers",
                      parameters={"temperature": 0.2, "stop": ["<a>", "<b>"]}, license="MIT")
    assert r.status == "success"
    sh = client.show("tiny:1")
    raw = http.post("/api/show", json={"model": "tiny:1"}).json()
    assert raw["system"] == "short answers" and sh.license == "MIT"
    assert sh.parameters is not None
    lines = sh.parameters.splitlines()
    assert f"{'temperature':<30} 0.2" in lines and f"{'stop':<30} \"<a>\"" in lines
    assert sh.details and sh.details.parameter_size == "5K"
    client.copy("tiny:1", "someone/tiny:copy")
    names = [m.model for m in client.list().models]
    assert {"tiny:1", "someone/tiny:copy"} <= set(names)
    assert names.index("someone/tiny:copy") < names.index("smollm2:135m")  # newest first
    client.delete("tiny:1")
    assert srv.models_dir.joinpath("blobs", digest.replace(":", "-")).is_file()  # still shared
    client.delete("someone/tiny:copy")
    assert not srv.models_dir.joinpath("blobs", digest.replace(":", "-")).exists()
    with pytest.raises(ollama.ResponseError) as e:
        client.delete("tiny:1")
    assert e.value.status_code == 404 and e.value.error == "model 'tiny:1' not found"


def test_create_stream_statuses(http: httpx.Client) -> None:
    with http.stream("POST", "/api/create", json={"model": "kid", "from": "smollm2:135m",
                                                  "template": "{{ .Prompt }}"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        statuses = [json.loads(line)["status"] for line in r.iter_lines() if line]
    assert statuses[-2:] == ["writing manifest", "success"]
    assert any(s.startswith("using existing layer sha256:") for s in statuses)
    assert any(s.startswith("creating new layer sha256:") for s in statuses)
    body = http.post("/api/show", json={"model": "kid"}).json()
    assert body["template"] == "{{ .Prompt }}"
    assert body["details"]["parent_model"] == "smollm2:135m"
    # /api/tags (like /api/ps) reports the config's details: Ollama's ListHandler sets no
    # parent_model, every ModelDetails field is always written, and (Ollama's model list)
    # context_length / embedding_length come from the config, else the GGUF.
    tag = next(m for m in http.get("/api/tags").json()["models"] if m["name"] == "kid:latest")
    assert tag["details"] == {"parent_model": "", "format": "gguf", "family": "llama",
                              "families": ["llama"], "parameter_size": "134.52M",
                              "quantization_level": "Q4_1", "context_length": 8192,
                              "embedding_length": 576}
    assert http.request("DELETE", "/api/delete", json={"model": "kid"}).status_code == 200


@pytest.mark.parametrize(("body", "status", "error"), [
    (None, 400, "missing request body"),
    ({"model": "a b", "from": "smollm2:135m"}, 400, "invalid model name"),
    ({"model": "x", "stream": False}, 400, "neither 'from' or 'files' was specified"),
    # a FROM model not in the store is pulled first, as Ollama does (a closed loopback port
    # stands in for a registry without it: no outside network in tests)
    ({"model": "x", "from": "127.0.0.1:1/library/nothing:here", "stream": False}, 500,
     "pull model manifest: "),
    ({"model": "x", "files": {"../../etc/passwd": "sha256:" + "a" * 64}}, 400,
     "file path must be relative"),
    ({"model": "x", "files": {"a.gguf": "/etc/passwd"}}, 400, "invalid digest format"),
    ({"model": "x", "files": {"a.gguf": "sha256:" + "a" * 64}}, 400, "not found"),
    ({"model": "x", "from": "smollm2:135m", "parameters": {"temperature": "hot"}}, 400,
     "invalid"),
    ({"model": 5}, 400, "cannot unmarshal number"),
])
def test_create_errors(http: httpx.Client, srv: ServerProc, body: object, status: int,
                       error: str) -> None:
    before = files_outside(srv.models_dir.parent)
    r = http.post("/api/create", json=body) if body is not None else \
        http.post("/api/create", content=b"")
    assert r.status_code == status, r.text
    assert error in r.json()["error"]
    assert files_outside(srv.models_dir.parent) == before
    assert not srv.models_dir.joinpath("manifests/registry.ollama.ai/library/x").exists()


def test_create_rejects_non_gguf_blob(client: ollama.Client, tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("definitely not a model")
    d = client.create_blob(p)
    with pytest.raises(ollama.ResponseError) as e:
        client.create(model="bad", files={"notes.txt": d})
    assert e.value.status_code == 400
    assert e.value.error == "supplied file was not in GGUF format"


def test_blob_endpoint_rules(http: httpx.Client, srv: ServerProc) -> None:
    data = os.urandom(3000)
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    assert http.head(f"/api/blobs/{d}").status_code == 404
    r = http.post(f"/api/blobs/sha256:{'0' * 64}", content=data)
    assert r.status_code == 400
    assert r.json()["error"] == (f'digest mismatch, expected "sha256:{"0" * 64}", '
                                 f'got "{d}"')
    assert http.post(f"/api/blobs/{d}", content=data).status_code == 201
    assert http.post(f"/api/blobs/{d.replace(':', '-')}", content=data).status_code == 200
    assert srv.models_dir.joinpath("blobs", d.replace(":", "-")).read_bytes() == data
    for bad in ("sha256:abc", "md5:" + "0" * 32, "sha256:" + "g" * 64,
                "sha256:..%2F..%2Fetc%2Fpasswd"):
        r = http.post(f"/api/blobs/{bad}", content=b"x")
        assert r.status_code in (400, 404), bad
        if r.status_code == 400:
            assert r.json()["error"] == "invalid digest format"
        assert http.head(f"/api/blobs/{bad}").status_code in (400, 404)
    # No upload temp files linger.
    assert not [p for p in srv.models_dir.joinpath("blobs").iterdir() if "tmp" in p.name]


def test_copy_and_delete_errors(http: httpx.Client) -> None:
    r = http.post("/api/copy", json={"source": "nope", "destination": "x"})
    assert (r.status_code, r.json()["error"]) == (404, 'model "nope" not found')
    r = http.post("/api/copy", json={"source": "a b", "destination": "x"})
    assert (r.status_code, r.json()["error"]) == (400, 'source "a b" is invalid')
    r = http.post("/api/copy", json={"source": "smollm2:135m", "destination": "x/../y"})
    assert (r.status_code, r.json()["error"]) == (400, 'destination "x/../y" is invalid')
    r = http.request("DELETE", "/api/delete", json={})
    assert (r.status_code, r.json()["error"]) == (400, "model is required")
    r = http.request("DELETE", "/api/delete", json={"model": "../x"})
    assert (r.status_code, r.json()["error"]) == (400, 'name "../x" is invalid')
    r = http.post("/api/show", json={})
    assert (r.status_code, r.json()["error"]) == (400, "model is required")
    r = http.get("/api/show")
    assert r.status_code == 405
    r = http.post("/api/show", content=b"x")
    assert (r.status_code, r.json()["error"]) == (
        400, "invalid character 'x' looking for beginning of value")
    r = http.post("/api/copy", content=b"[1]")
    assert r.status_code == 400 and "cannot unmarshal array" in r.json()["error"]


def test_tags_head_and_shape(http: httpx.Client) -> None:
    assert http.head("/api/tags").status_code == 200
    body = http.get("/api/tags").json()
    m = next(m for m in body["models"] if m["name"] == "smollm2:135m")
    assert m["model"] == m["name"]
    assert set(m) >= {"name", "model", "modified_at", "size", "digest", "details"}
    assert m["capabilities"] == ["completion"]
    assert m["modified_at"][:4].isdigit() and "T" in m["modified_at"]


def test_openai_models(srv: ServerProc) -> None:
    o = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
    ids = [m.id for m in o.models.list()]
    assert "smollm2:135m" in ids
    m = o.models.retrieve("smollm2:135m")
    assert (m.id, m.object, m.owned_by) == ("smollm2:135m", "model", "library")
    assert m.created > 0
    with pytest.raises(openai.NotFoundError) as e:
        o.models.retrieve("missing-model")
    assert e.value.body["message"] == 'model "missing-model" not found'  # type: ignore[index]


def test_startup_prune(tmp_path: Path) -> None:
    """Unreferenced old blobs go at start; OLLAMA_NOPRUNE keeps them; models survive."""
    register_default_model(tmp_path / "models")
    orphan = tmp_path / "models" / "blobs" / ("sha256-" + "c" * 64)
    orphan.write_bytes(b"orphan")
    os.utime(orphan, (0, 0))
    s = start_server(tmp_path, {"OLLAMA_NOPRUNE": "1"})
    stop_server(s)
    assert orphan.exists()
    s = start_server(tmp_path)
    try:
        assert not orphan.exists()
        tags = httpx.get(s.url + "/api/tags", timeout=10).json()
        assert [m["name"] for m in tags["models"]] == ["smollm2:135m"]
    finally:
        stop_server(s)
