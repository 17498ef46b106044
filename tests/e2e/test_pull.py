"""`/api/pull` end to end: a real `ollamapy serve`, the official `ollama` client and the CLI,
against the local test registry serving the SmolLM2 GGUF."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from tests.conftest import ServerProc, start_server, stop_server
from tests.registry_server import TestRegistry

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

REPO, TAG = "library/smollm2", "135m"


@pytest.fixture
def registry(model_path: Path) -> Iterator[TestRegistry]:
    with TestRegistry() as reg:
        reg.add_model(REPO, TAG, model_path,
                      extra_layers=[("application/vnd.ollama.image.params",
                                     b'{"stop":["<|im_end|>"]}')])
        yield reg


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[ServerProc]:
    s = start_server(tmp_path)
    yield s
    stop_server(s)
    assert "Traceback" not in s.log(), s.log()  # bad input is an error reply, never a crash


def model_name(reg: TestRegistry) -> str:
    return f"{reg.host}/{REPO}:{TAG}"


def store_files(models: Path) -> list[str]:
    return sorted(str(p.relative_to(models)) for p in models.rglob("*") if p.is_file())


def blobs(models: Path) -> list[str]:
    d = models / "blobs"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_first_serve_creates_the_key(srv: ServerProc, tmp_path: Path) -> None:
    key = tmp_path / "home" / ".ollama" / "id_ed25519"
    assert key.exists() and key.stat().st_mode & 0o777 == 0o600
    pub = (tmp_path / "home" / ".ollama" / "id_ed25519.pub").read_text().strip()
    assert pub.startswith("ssh-ed25519 ")
    assert f"Couldn't find '{key}'. Generating new private key." in srv.log()
    assert pub in srv.log()


def test_official_client_pull_stream_and_not(srv: ServerProc, registry: TestRegistry) -> None:
    client = ollama.Client(host=srv.url, timeout=120)
    name = model_name(registry)
    statuses: list[str] = []
    last: dict[str, Any] = {}
    for p in client.pull(name, insecure=True, stream=True):
        statuses.append(p.status or "")
        if p.digest:
            last[p.digest] = (p.completed, p.total)
    manifest = json.loads(registry.manifests[(REPO, TAG)])
    layers = [*manifest["layers"], manifest["config"]]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    for layer in layers:
        assert f"pulling {layer['digest'][7:19]}" in statuses
        assert last[layer["digest"]] == (layer["size"], layer["size"])
    stored = srv.models_dir / "manifests" / registry.host / "library" / "smollm2" / TAG
    assert stored.read_bytes() == registry.manifests[(REPO, TAG)]
    for layer in layers:
        assert f"sha256-{layer['digest'][7:]}" in blobs(srv.models_dir)
    assert not [b for b in blobs(srv.models_dir) if "partial" in b]

    # again, not streamed: everything is present, nothing is downloaded
    served = registry.stats.bytes_served
    r = client.pull(name, insecure=True, stream=False)
    assert r.status == "success"
    assert registry.stats.bytes_served == served

    # the raw HTTP shapes: NDJSON by default, one JSON object when stream=false
    with httpx.stream("POST", srv.url + "/api/pull", json={"model": name, "insecure": True},
                      timeout=60) as resp:
        assert resp.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(x) for x in resp.iter_lines() if x]
    assert lines[0] == {"status": "pulling manifest"} and lines[-1] == {"status": "success"}
    r2 = httpx.post(srv.url + "/api/pull", json={"name": name, "insecure": True,
                                                 "stream": False}, timeout=60)
    assert r2.status_code == 200 and r2.json() == {"status": "success"}
    assert r2.headers["content-type"].startswith("application/json")

    # the pulled model is a model: listed and shown
    tags = httpx.get(srv.url + "/api/tags", timeout=10)
    assert tags.status_code == 200
    assert name in [m["name"] for m in tags.json()["models"]]
    show = httpx.post(srv.url + "/api/show", json={"model": name}, timeout=10)
    assert show.status_code == 200 and show.json()["details"]["format"] == "gguf"


def test_pulled_model_runs(srv: ServerProc, registry: TestRegistry, runner_binary: Path) -> None:
    client = ollama.Client(host=srv.url, timeout=120)
    name = model_name(registry)
    client.pull(name, insecure=True)
    probe = httpx.post(srv.url + "/api/generate", json={"model": name, "prompt": ""}, timeout=60)
    assert probe.status_code == 200 and probe.json()["done_reason"] == "load"
    r = client.generate(model=name, prompt="Say hi.",
                        options={"num_predict": 4, "num_ctx": 512, "temperature": 0,
                                 "num_thread": 1})
    assert r.done and r.eval_count and r.eval_count > 0


def test_interrupted_pull_resumes_after_server_restart(
        tmp_path: Path, registry: TestRegistry) -> None:
    srv = start_server(tmp_path)
    name = model_name(registry)
    registry.knobs.stall_after = 30 * 1000 * 1000   # the weights stop flowing at 30 MB ...
    registry.knobs.stall_seconds = 60
    seen: list[int] = []

    def pull() -> None:
        try:
            with httpx.stream("POST", srv.url + "/api/pull",
                              json={"model": name, "insecure": True}, timeout=60) as resp:
                for line in resp.iter_lines():
                    if line:
                        seen.append(int(json.loads(line).get("completed") or 0))
        except httpx.HTTPError:
            pass

    t = threading.Thread(target=pull, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and max(seen, default=0) < 30 * 1000 * 1000:
        time.sleep(0.05)  # until the server has received (not merely been sent) 30 MB
    assert stop_server(srv) == 0  # ... and the server is restarted meanwhile
    t.join(10)
    assert max(seen, default=0) > 0
    kept = blobs(srv.models_dir)
    assert any(b.endswith("-partial") for b in kept) and any(b.endswith("-partial-0")
                                                             for b in kept)
    record = json.loads((srv.models_dir / "blobs" /
                         next(b for b in kept if b.endswith("-partial-0"))).read_text())
    assert record["Completed"] == 30 * 1000 * 1000
    served_before = registry.stats.range_bytes
    # A long restart (past start-up pruning's 1 h grace for stray files) must not lose it.
    two_hours_ago = time.time() - 2 * 3600
    for b in kept:
        os.utime(srv.models_dir / "blobs" / b, (two_hours_ago, two_hours_ago))

    registry.knobs.stall_after = None
    srv2 = start_server(tmp_path)
    try:
        r = ollama.Client(host=srv2.url, timeout=120).pull(name, insecure=True)
        assert r.status == "success"
    finally:
        stop_server(srv2)
    manifest = json.loads(registry.manifests[(REPO, TAG)])
    total = sum(x["size"] for x in [*manifest["layers"], manifest["config"]])
    probes = len([r for r in registry.stats.requests if r.headers.get("Range") == "bytes=0-0"])
    # nothing that had arrived before the restart was sent again
    assert registry.stats.range_bytes == total + probes
    assert registry.stats.range_bytes - served_before < total - 29 * 1000 * 1000
    assert not [b for b in blobs(srv2.models_dir) if "partial" in b]


def test_client_disconnect_stops_the_download_and_keeps_progress(
        srv: ServerProc, registry: TestRegistry) -> None:
    name = model_name(registry)
    registry.knobs.stall_after = 20 * 1000 * 1000
    registry.knobs.stall_seconds = 60
    with httpx.stream("POST", srv.url + "/api/pull", json={"model": name, "insecure": True},
                      timeout=30) as resp:
        for line in resp.iter_lines():
            if line and int(json.loads(line).get("completed") or 0) >= 20 * 1000 * 1000:
                break  # hang up while the blob is stalled at 20 MB
    records = srv.models_dir / "blobs"
    deadline = time.monotonic() + 10
    completed = 0
    while time.monotonic() < deadline and completed != 20 * 1000 * 1000:
        time.sleep(0.05)
        for f in records.glob("*-partial-0"):
            completed = json.loads(f.read_text() or "{}").get("Completed", 0)
    assert completed == 20 * 1000 * 1000  # the pull was cancelled and its progress saved
    registry.knobs.stall_after = None
    r = ollama.Client(host=srv.url, timeout=120).pull(name, insecure=True)
    assert r.status == "success"
    manifest = json.loads(registry.manifests[(REPO, TAG)])
    total = sum(x["size"] for x in [*manifest["layers"], manifest["config"]])
    probes = len([r for r in registry.stats.requests if r.headers.get("Range") == "bytes=0-0"])
    assert registry.stats.range_bytes == total + probes
    assert "Traceback" not in srv.log()


def test_corrupt_blob_is_rejected_and_nothing_is_left(srv: ServerProc,
                                                      registry: TestRegistry) -> None:
    registry.knobs.wrong_bytes = True
    client = ollama.Client(host=srv.url, timeout=120)
    with pytest.raises(ollama.ResponseError, match="digest mismatch, file must be downloaded "
                                                   "again: want sha256:"):
        for _ in client.pull(model_name(registry), insecure=True, stream=True):
            pass
    weights = json.loads(registry.manifests[(REPO, TAG)])["layers"][0]["digest"]
    assert f"sha256-{weights[7:]}" not in blobs(srv.models_dir)
    assert not [b for b in blobs(srv.models_dir) if "partial" in b]
    assert not (srv.models_dir / "manifests").exists() or \
        not list((srv.models_dir / "manifests").rglob("135m"))
    # non-streamed: a real error status with Ollama's body
    r = httpx.post(srv.url + "/api/pull", json={"model": model_name(registry), "insecure": True,
                                                "stream": False}, timeout=60)
    assert r.status_code == 500 and r.json()["error"].startswith("digest mismatch")


def test_traversal_digest_writes_nothing_anywhere(srv: ServerProc, registry: TestRegistry,
                                                   tmp_path: Path) -> None:
    manifest = json.loads(registry.manifests[(REPO, TAG)])
    manifest["layers"].append({"mediaType": "application/vnd.ollama.image.model",
                               "digest": "sha256:../../../../../../../tmp/pwned", "size": 4})
    registry.add_manifest(REPO, "evil", manifest)
    before = sorted(str(p) for p in tmp_path.rglob("*") if p.name != "server.log")
    client = ollama.Client(host=srv.url, timeout=60)
    with pytest.raises(ollama.ResponseError, match="invalid digest format"):
        client.pull(f"{registry.host}/{REPO}:evil", insecure=True)
    after = sorted(str(p) for p in tmp_path.rglob("*") if p.name != "server.log")
    assert after == before
    assert not Path("/tmp/pwned").exists()


def test_token_auth_and_foreign_realm(srv: ServerProc, registry: TestRegistry,
                                      tmp_path: Path) -> None:
    registry.knobs.require_token = True
    registry.knobs.redirect = True
    client = ollama.Client(host=srv.url, timeout=120)
    assert client.pull(model_name(registry), insecure=True).status == "success"
    pub = (tmp_path / "home" / ".ollama" / "id_ed25519.pub").read_text().split()[1]
    assert registry.public_keys == [pub]  # signed with the server's own key
    assert all("Authorization" not in r.headers for r in registry.stats.hits("cdn"))

    registry.knobs.realm = f"http://{registry.evil_host}/token"
    registry.knobs.redirect = False
    registry.tokens.clear()
    registry.add_manifest(REPO, "other", registry.manifests[(REPO, TAG)])
    with pytest.raises(ollama.ResponseError, match="does not match original host"):
        client.pull(f"{registry.host}/{REPO}:other", insecure=True)
    assert registry.stats.hits("evil") == []


def test_request_errors(srv: ServerProc, registry: TestRegistry) -> None:
    url = srv.url
    r = httpx.post(url + "/api/pull", content=b"", timeout=10)
    assert (r.status_code, r.json()) == (400, {"error": "missing request body"})
    r = httpx.post(url + "/api/pull", json={}, timeout=10)
    assert (r.status_code, r.json()) == (400, {"error": "invalid model name"})
    r = httpx.post(url + "/api/pull", json={"model": "a/b/c/d"}, timeout=10)
    assert (r.status_code, r.json()) == (400, {"error": "invalid model name"})
    r = httpx.post(url + "/api/push", json={}, timeout=10)
    assert (r.status_code, r.json()) == (400, {"error": "model is required"})
    r = httpx.post(url + "/api/pull", json={"model": "m", "insecure": "yes"}, timeout=10)
    assert r.status_code == 400 and "cannot unmarshal string" in r.json()["error"]
    assert httpx.get(url + "/api/pull", timeout=10).status_code == 405
    r = httpx.post(url + "/api/pull", json={"model": f"{registry.host}/{REPO}:nope",
                                            "insecure": True, "stream": False}, timeout=30)
    assert (r.status_code, r.json()) == \
        (500, {"error": "pull model manifest: file does not exist"})
    r = httpx.post(url + "/api/pull", json={"model": f"http://{registry.host}/{REPO}:{TAG}"},
                   timeout=30)
    assert r.status_code == 500 and r.json() == {"error": "insecure protocol http"}
    lines = [json.loads(x) for x in httpx.post(
        url + "/api/pull", json={"model": f"{registry.host}/{REPO}:nope", "insecure": True},
        timeout=30).text.splitlines()]
    assert lines == [{"status": "pulling manifest"},
                     {"error": "pull model manifest: file does not exist"}]


def test_cli_pull(srv: ServerProc, registry: TestRegistry) -> None:
    env = {**os.environ, "OLLAMA_HOST": srv.host}
    cmd = [sys.executable, "-m", "ollamapy.cli.main", "pull", "--insecure", model_name(registry)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    manifest = json.loads(registry.manifests[(REPO, TAG)])
    assert lines[0] == "pulling manifest"
    assert lines[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    weights = manifest["layers"][0]["digest"][7:19]
    bar = next(x for x in lines if x.startswith(f"pulling {weights}:"))
    assert "100%" in bar and "98 MB" in bar and "▕" in bar
    bad = subprocess.run([*cmd[:-2], f"{registry.host}/{REPO}:nope", "--insecure"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert bad.stderr.splitlines()[-1] == "Error: pull model manifest: file does not exist"


def test_run_pulls_a_missing_model(srv: ServerProc, registry: TestRegistry,
                                   runner_binary: Path) -> None:
    env = {**os.environ, "OLLAMA_HOST": srv.host}
    p = subprocess.run([sys.executable, "-m", "ollamapy.cli.main", "run", "--insecure",
                        model_name(registry), "Say hi."], env=env, capture_output=True,
                       text=True, timeout=150)
    assert p.returncode == 0, p.stderr
    assert "pulling manifest" in p.stderr and "success" in p.stderr
    assert p.stdout.strip()
