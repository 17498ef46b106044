"""Remote access and browser safety against a real `ollamapy serve` over real sockets:
OLLAMA_HOST=0.0.0.0 / [::] answering remote clients, the Host check on loopback binds, CORS, API
keys (raw HTTP, the ollamapy CLI, the openai and ollama clients), and SIGTERM / crash-restart.

Remote clients run inside a network namespace joined to this machine by a veth pair (the
`netns` fixture, tests/netns.py): their traffic crosses that link to the server on the host end
and never goes to this machine's own network addresses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import free_port, start_server, stop_server
from tests.netns import VethNamespace

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "ollamapy.cli.main"]


def cli(args: list[str], host: str, tmp_path: Path, ns: VethNamespace | None = None,
        **env: str) -> subprocess.CompletedProcess:
    """The ollamapy CLI with OLLAMA_HOST=host; run inside `ns` when given (a remote user)."""
    e = dict(os.environ, OLLAMA_HOST=host, HOME=str(tmp_path))
    e.pop("OLLAMA_API_KEY", None)
    e.update(env)
    if ns is None:
        return subprocess.run([*CLI, *args], env=e, capture_output=True, text=True, timeout=30)
    ns.check_target(host)
    return ns.run([*CLI, *args], env=ns.env(e), timeout=30)


def test_all_interfaces_answers_on_a_non_loopback_address(tmp_path: Path,
                                                          netns: VethNamespace) -> None:
    port = free_port()
    s = start_server(tmp_path, host=f"0.0.0.0:{port}")
    url = netns.url(port)
    try:
        root, vhost, evil = netns.http(
            ("GET", f"{url}/", {}),
            # Bound to all interfaces: no Host check (reverse proxies, real hostnames).
            ("GET", f"{url}/api/version", {"Host": "ollama.example.com"}),
            # ... but CORS still applies to browsers.
            ("GET", f"{url}/api/version", {"Origin": "https://evil.example"}))
        assert root.status == 200 and root.text == "Ollama is running"
        assert vhost.status == 200
        assert evil.status == 403
        # The CLI reaches it through OLLAMA_HOST (0.0.0.0 -> 127.0.0.1 for clients) and remotely.
        assert cli(["-v"], f"0.0.0.0:{port}", tmp_path).stdout.startswith("ollamapy version is")
        remote = cli(["-v"], url, tmp_path, netns)
        assert remote.returncode == 0, remote.stderr
    finally:
        stop_server(s)
    log = s.log()
    assert f"Listening on 0.0.0.0:{port}" in log
    assert "no API keys are set" in log and "level=WARNING" in log


def test_ipv6_all_interfaces(tmp_path: Path, netns: VethNamespace) -> None:
    if netns.host_v6 is None:
        pytest.skip(f"IPv6 is unavailable on this machine: {netns.ipv6_error}")
    port = free_port()
    s = start_server(tmp_path, host=f"[::]:{port}")
    try:
        r = httpx.get(f"http://[::1]:{port}/api/version", timeout=5)
        assert r.status_code == 200
        (remote,) = netns.http(("GET", f"{netns.url(port, v6=True)}/api/version", {}))
        assert remote.status == 200 and remote.text.startswith('{"version":')
    finally:
        stop_server(s)
    assert "no API keys are set" in s.log()


def test_loopback_bind_host_and_origin_checks(server) -> None:
    url = server.url
    r = httpx.get(url + "/api/tags", headers={"Host": "attacker.example.com"}, timeout=5)
    assert r.status_code == 403 and r.json() == {"error": "host not allowed"}
    r = httpx.get(url + "/api/tags", headers={"Host": "localhost"}, timeout=5)
    assert r.status_code == 200
    r = httpx.options(url + "/api/tags", headers={"Host": "mybox.local"}, timeout=5)
    assert r.status_code == 204
    # CORS: preflight from an allowed origin, refusal for a foreign one.
    pre = httpx.options(url + "/api/chat", timeout=5, headers={
        "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,authorization"})
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "Authorization" in pre.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in pre.headers
    r = httpx.get(url + "/api/tags", headers={"Origin": "http://localhost:5173"}, timeout=5)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "http://localhost:5173"
    r = httpx.post(url + "/api/chat", json={"model": "x"}, timeout=5,
                   headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and r.json() == {"error": "origin not allowed"}
    assert "no API keys are set" not in server.log()  # loopback: nothing to warn about


def test_ollama_origins_added(tmp_path: Path) -> None:
    s = start_server(tmp_path, {"OLLAMA_ORIGINS": "https://chat.example.com"})
    try:
        for origin, status in (("https://chat.example.com", 200), ("http://127.0.0.1:3000", 200),
                               ("https://other.example.com", 403)):
            r = httpx.get(s.url + "/api/version", headers={"Origin": origin}, timeout=5)
            assert r.status_code == status, origin
    finally:
        stop_server(s)


def test_api_keys_over_the_network(tmp_path: Path, netns: VethNamespace) -> None:
    keyfile = tmp_path / "keys"
    keyfile.write_text("# team keys\nkey-from-file-123\n")
    port = free_port()
    s = start_server(tmp_path, {"OLLAMA_API_KEYS": "env-key-456",
                                "OLLAMA_API_KEYS_FILE": str(keyfile)}, host=f"0.0.0.0:{port}")
    url = netns.url(port)
    try:
        none, near, from_file, from_env, v1_bad, preflight = netns.http(
            ("GET", f"{url}/api/tags", {}),
            ("GET", f"{url}/api/tags", {"Authorization": "Bearer key-from-file-124"}),
            ("GET", f"{url}/api/tags", {"Authorization": "Bearer key-from-file-123"}),
            ("GET", f"{url}/api/tags", {"Authorization": "Bearer env-key-456"}),
            ("GET", f"{url}/v1/models", {"Authorization": "Bearer bad"}),
            # A browser preflight carries no credentials and must still be answered.
            ("OPTIONS", f"{url}/api/chat", {"Origin": "http://localhost:3000",
                                           "Access-Control-Request-Method": "POST"}))
        assert none.status == 401 and json.loads(none.text) == {"error": "unauthorized"}
        assert near.status == 401
        assert from_file.status == 200 and from_env.status == 200
        assert v1_bad.status == 401
        assert json.loads(v1_bad.text)["error"]["message"] == "unauthorized"
        assert preflight.status == 204
        # The CLI sends OLLAMA_API_KEY; without it the server's refusal is reported.
        ok = cli(["list"], url, tmp_path, netns, OLLAMA_API_KEY="env-key-456")
        assert ok.returncode == 0 and ok.stdout.startswith("NAME"), ok.stderr
        bad = cli(["list"], url, tmp_path, netns)
        assert bad.returncode == 1 and bad.stderr == "Error: unauthorized\n"
        v = cli(["-v"], url, tmp_path, netns)
        assert "could not connect to a running ollamapy instance: unauthorized" in v.stdout
        # OpenAI clients send their api_key as a Bearer token.
        oa = netns.call("tests.netns_client:openai_models", f"{url}/v1", "key-from-file-123")
        assert oa == {"data_is_list": True}
        oa = netns.call("tests.netns_client:openai_models", f"{url}/v1", "nope")
        assert oa == {"error": "AuthenticationError"}
    finally:
        stop_server(s)
    log = s.log()
    assert "API key authentication enabled" in log and "no API keys are set" not in log
    for secret in ("key-from-file-123", "env-key-456", "key-from-file-124"):
        assert secret not in log


def test_scoped_keys_through_the_official_clients(tmp_path: Path, netns: VethNamespace) -> None:
    """An inference key runs and lists models but cannot manage them; the admin key can."""
    keyfile = tmp_path / "keys"
    keyfile.write_text("# ops\nadm-key-1 admin\ninf-key-2 inference  # the app\n")
    port = free_port()
    s = start_server(tmp_path, {"OLLAMA_API_KEYS_FILE": str(keyfile),
                                "OLLAMA_API_KEYS": "adm-key-1"},  # the readiness probe's key
                     host=f"0.0.0.0:{port}")
    url = netns.url(port)
    try:
        listed, *refused = netns.call(
            "tests.netns_client:ollama_calls", url, {"Authorization": "Bearer inf-key-2"},
            [["list"], ["delete", "smollm2:135m"], ["copy", "a", "b"], ["pull", "smollm2:135m"]])
        assert listed == {"result": {"models": []}}
        assert len(refused) == 3
        for e in refused:
            assert e["status_code"] == 403 and "admin key" in e["error"], e
        (missing,) = netns.call(
            "tests.netns_client:ollama_calls", url, {"Authorization": "Bearer adm-key-1"},
            [["delete", "nonexistent:latest"]])
        assert missing["status_code"] == 404  # past the scope check: the model is missing
        (r,) = netns.http(("GET", f"{url}/api/tags", {"x-api-key": "inf-key-2"}))
        assert r.status == 200  # Anthropic clients' header
    finally:
        stop_server(s)
    assert "adm-key-1" not in s.log() and "inf-key-2" not in s.log()


def test_unreadable_key_file_stops_the_server(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="OLLAMA_API_KEYS_FILE"):
        start_server(tmp_path, {"OLLAMA_API_KEYS_FILE": str(tmp_path / "missing")})


def test_sigterm_exits_zero_and_restart_after_crash(tmp_path: Path) -> None:
    s = start_server(tmp_path)
    assert stop_server(s) == 0  # SIGTERM: clean shutdown, exit 0
    s = start_server(tmp_path)
    s.proc.send_signal(signal.SIGKILL)  # a crash, as systemd would see it
    s.proc.wait(10)
    s = start_server(tmp_path)  # Restart=always: the same store, same port choice is fresh
    try:
        assert httpx.get(s.url + "/api/tags", timeout=5).status_code == 200
    finally:
        assert stop_server(s) == 0


@pytest.mark.e2e
def test_sigterm_during_a_stream_stops_runners_and_exits_zero(model_server) -> None:
    """What `systemctl stop` does mid-answer: bounded shutdown, exit 0, no runner left behind."""
    import threading
    import time

    got_chunk = threading.Event()
    outcome: dict[str, object] = {}

    def stream() -> None:
        try:
            with httpx.stream("POST", model_server.url + "/api/generate", timeout=120, json={
                    "model": "smollm2:135m", "prompt": "Write a very long story.",
                    "options": {"num_predict": 4000, "num_ctx": 2048}}) as r:
                for _line in r.iter_lines():
                    got_chunk.set()
            outcome["ended"] = "cleanly"
        except httpx.HTTPError as e:
            outcome["ended"] = type(e).__name__

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    assert got_chunk.wait(120), model_server.log()
    runners = [c for c in psutil.Process(model_server.proc.pid).children(recursive=True)
               if "llama-server" in c.name()]
    assert runners, "the answer streams, so a llama-server must be running"
    start = time.monotonic()
    model_server.proc.send_signal(signal.SIGTERM)
    assert model_server.proc.wait(30) == 0
    assert time.monotonic() - start < 30
    t.join(30)
    assert "ended" in outcome  # the client's stream finished (ended or cut), no hang
    _, alive = psutil.wait_procs(runners, timeout=10)
    assert not alive, f"runner(s) outlived the server: {alive}"


@pytest.mark.e2e
def test_crash_mid_stream_then_restart(model_server, tmp_path: Path) -> None:
    """Restart=always after a crash: the runner dies with the server (parent-death signal), the
    store is intact and the restarted server answers with the same model."""
    import time

    with httpx.stream("POST", model_server.url + "/api/generate", timeout=120, json={
            "model": "smollm2:135m", "prompt": "Tell a long story.",
            "options": {"num_predict": 4000, "num_ctx": 2048}}) as r:
        next(r.iter_lines())
        runners = [c for c in psutil.Process(model_server.proc.pid).children(recursive=True)
                   if "llama-server" in c.name()]
        assert runners
        model_server.proc.send_signal(signal.SIGKILL)
        model_server.proc.wait(10)
    _, alive = psutil.wait_procs(runners, timeout=10)
    assert not alive, "llama-server outlived a crashed server"
    time.sleep(0.1)
    s = start_server(tmp_path)  # same OLLAMA_MODELS and HOME as the crashed one
    try:
        names = [m["name"] for m in httpx.get(s.url + "/api/tags", timeout=10).json()["models"]]
        assert names == ["smollm2:135m"]
        g = httpx.post(s.url + "/api/generate", timeout=120, json={
            "model": "smollm2:135m", "prompt": "Hi", "stream": False,
            "options": {"num_predict": 4, "num_ctx": 2048}})
        assert g.status_code == 200 and g.json()["done"] is True
    finally:
        assert stop_server(s) == 0


def leave_crash_debris(models: Path, where: str) -> Path:
    """A temp file a crashed server left behind (atomic writes: temp + rename), an hour+ old."""
    d = {"blobs": models / "blobs",
         "manifests": models / "manifests" / "registry.ollama.ai" / "library" / "smollm2"}[where]
    f = d / ("sha256-tmp-crashed" if where == "blobs" else ".tmp-crashed")
    f.write_text('{"schemaVersion": 2, "trunc')
    os.utime(f, (0, 0))
    return f


def test_restart_after_a_crash_cleans_stale_blob_temp_files(tmp_path: Path) -> None:
    from tests.conftest import register_default_model

    register_default_model(tmp_path / "models")
    debris = leave_crash_debris(tmp_path / "models", "blobs")
    s = start_server(tmp_path)
    try:
        names = [m["name"] for m in httpx.get(s.url + "/api/tags", timeout=10).json()["models"]]
        assert names == ["smollm2:135m"]
    finally:
        stop_server(s)
    assert not debris.exists()


def test_restart_after_a_crash_cleans_stale_manifest_temp_files(tmp_path: Path) -> None:
    from tests.conftest import register_default_model

    register_default_model(tmp_path / "models")
    debris = leave_crash_debris(tmp_path / "models", "manifests")
    s = start_server(tmp_path)
    try:
        names = [m["name"] for m in httpx.get(s.url + "/api/tags", timeout=10).json()["models"]]
        assert names == ["smollm2:135m"]  # the debris is not taken for a model
    finally:
        stop_server(s)
    assert not debris.exists()
