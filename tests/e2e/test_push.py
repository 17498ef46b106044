"""`/api/push` end to end: push a model from a real `ollamapy serve` to the local test registry
with the official client and the CLI, then pull it back into another server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from tests.conftest import ServerProc, start_server, stop_server
from tests.registry_server import TestRegistry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REPO, TAG = "library/smollm2", "135m"


@pytest.fixture
def registry(model_path: Path) -> Iterator[TestRegistry]:
    with TestRegistry() as reg:
        reg.add_model(REPO, TAG, model_path)
        yield reg


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[ServerProc]:
    (tmp_path / "a").mkdir()
    s = start_server(tmp_path / "a")
    yield s
    stop_server(s)
    assert "Traceback" not in s.log(), s.log()  # bad input is an error reply, never a crash


def local_model(srv: ServerProc, reg: TestRegistry, target: str) -> bytes:
    """Pull the test model, then copy it to `target` (the name to push)."""
    client = ollama.Client(host=srv.url, timeout=120)
    client.pull(f"{reg.host}/{REPO}:{TAG}", insecure=True)
    r = httpx.post(srv.url + "/api/copy", json={"source": f"{reg.host}/{REPO}:{TAG}",
                                                "destination": target}, timeout=30)
    assert r.status_code == 200, r.text
    host, ns, rest = target.split("/")
    model, tag = rest.split(":")
    return (srv.models_dir / "manifests" / host / ns / model / tag).read_bytes()


@pytest.mark.parametrize("stream", [True, False])
def test_push_round_trips(srv: ServerProc, registry: TestRegistry, tmp_path: Path,
                          stream: bool) -> None:
    target = f"{registry.host}/me/smol:v1"
    local = local_model(srv, registry, target)
    registry.blobs.clear()  # the registry starts empty: every blob is really uploaded
    client = ollama.Client(host=srv.url, timeout=120)
    if stream:
        statuses = [p.status for p in client.push(target, insecure=True, stream=True)]
        assert statuses[0] == "retrieving manifest"
        assert statuses[-2:] == ["pushing manifest", "success"]
        manifest = json.loads(local)
        for layer in [*manifest["layers"], manifest["config"]]:
            assert f"pushing {layer['digest'][7:19]}" in statuses
    else:
        assert client.push(target, insecure=True, stream=False).status == "success"
    assert registry.manifests[("me/smol", "v1")] == local
    assert any(r.method == "PATCH" for r in registry.stats.requests)

    # pull it back into a different server: same manifest, same digests, same bytes
    (tmp_path / "b").mkdir()
    other = start_server(tmp_path / "b")
    try:
        ollama.Client(host=other.url, timeout=120).pull(target, insecure=True)
        back = other.models_dir / "manifests" / registry.host / "me" / "smol" / "v1"
        assert back.read_bytes() == local
        for layer in json.loads(local)["layers"]:
            blob = f"blobs/sha256-{layer['digest'][7:]}"
            assert (other.models_dir / blob).stat().st_size == layer["size"]
            assert (other.models_dir / blob).read_bytes() == (srv.models_dir / blob).read_bytes()
    finally:
        stop_server(other)


def test_push_with_token_and_upload_redirect(srv: ServerProc, registry: TestRegistry) -> None:
    target = f"{registry.host}/me/smol:v2"
    local = local_model(srv, registry, target)
    registry.blobs.clear()
    registry.knobs.require_token = True
    registry.knobs.upload_redirect = True
    r = ollama.Client(host=srv.url, timeout=120).push(target, insecure=True)
    assert r.status == "success"
    assert registry.manifests[("me/smol", "v2")] == local
    cdn = registry.stats.hits("cdn")
    assert cdn and all(r.method == "PUT" and "Authorization" not in r.headers for r in cdn)
    assert registry.stats.tokens_issued >= 1


def test_push_errors(srv: ServerProc, registry: TestRegistry) -> None:
    r = httpx.post(srv.url + "/api/push", json={"model": f"{registry.host}/me/none:v1",
                                                "insecure": True}, timeout=30)
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert lines[:2] == [{"status": "retrieving manifest"},
                         {"status": "couldn't retrieve manifest"}]
    assert "not found" in lines[-1]["error"]
    with pytest.raises(ollama.ResponseError):
        ollama.Client(host=srv.url).push(f"{registry.host}/me/none:v1", insecure=True)
    r = httpx.post(srv.url + "/api/push", json={"model": f"http://{registry.host}/me/none:v1"},
                   timeout=30)
    assert [json.loads(x) for x in r.text.splitlines()] == \
        [{"status": "retrieving manifest"}, {"error": "insecure protocol http"}]


def test_cli_push(srv: ServerProc, registry: TestRegistry) -> None:
    target = f"{registry.host}/me/smol:v3"
    local_model(srv, registry, target)
    env = {**os.environ, "OLLAMA_HOST": srv.host}
    p = subprocess.run([sys.executable, "-m", "ollamapy.cli.main", "push", "--insecure", target],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stderr.splitlines()[0] == "retrieving manifest"
    assert p.stderr.splitlines()[-2:] == ["pushing manifest", "success"]
    assert p.stdout == f"\nYou can find your model at:\n\n\t{target}\n"
    assert ("me/smol", "v3") in registry.manifests
