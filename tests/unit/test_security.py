"""CORS, Host check and API keys: the pure decisions, then the middlewares in a real aiohttp app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ollamapy.config import load_settings
from ollamapy.server import security
from ollamapy.server.app import create_app

ORIGINS = security.allowed_origins([])


# ----------------------------------------------------------------------------- pure decisions

@pytest.mark.parametrize("origin", [
    "http://localhost", "https://localhost", "http://localhost:3000", "https://127.0.0.1:8443",
    "http://0.0.0.0:1", "app://obsidian.md", "file://", "tauri://localhost",
    "vscode-webview://abc", "vscode-file://vscode-app",
])
def test_default_origins_allowed(origin: str) -> None:
    assert security.origin_allowed(origin, ORIGINS)


@pytest.mark.parametrize("origin", [
    "http://evil.com", "https://localhost.evil.com", "http://127.0.0.2", "null",
    "chrome-extension://abc", "http://localhostx", "https://192.168.1.5",
])
def test_foreign_origins_rejected(origin: str) -> None:
    assert not security.origin_allowed(origin, ORIGINS)


def test_ollama_origins_append_and_wildcards() -> None:
    pats = security.allowed_origins(["https://app.example.com", "chrome-extension://*"])
    assert security.origin_allowed("https://app.example.com", pats)
    assert security.origin_allowed("chrome-extension://abcdef", pats)
    assert security.origin_allowed("http://localhost:8080", pats)  # defaults stay
    assert not security.origin_allowed("https://app.example.com.evil", pats)
    assert security.allow_all(security.allowed_origins(["*"]))


@pytest.mark.parametrize("bad", ["example.com", "http://a*b*c", "ftp://x"])
def test_bad_origin_patterns_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        security.validate_origin_patterns([bad])


def test_same_origin_is_not_cors() -> None:
    assert security.same_origin("http://127.0.0.1:11434", "127.0.0.1:11434")
    assert not security.same_origin("http://127.0.0.1:11435", "127.0.0.1:11434")


@pytest.mark.parametrize(("header", "host"), [
    ("[::1]:11434", "::1"), ("localhost:11434", "localhost"), ("example.com", "example.com"),
    ("::1", "::1"), ("10.0.0.1:80", "10.0.0.1"),
])
def test_split_host(header: str, host: str) -> None:
    assert security.split_host(header) == host


@pytest.mark.parametrize(("header", "ok"), [
    ("127.0.0.1:11434", True), ("localhost:11434", True), ("LOCALHOST", True), ("[::1]:1", True),
    ("10.1.2.3", True), ("192.168.0.7:11434", True), ("0.0.0.0", True), ("", True),
    ("myhost", True), ("MyHost.:1", False), ("printer.local", True), ("a.b.internal:99", True),
    ("foo.localhost", True), ("203.0.113.9", True), ("8.8.8.8", False),
    ("evil.com", False), ("localhost.evil.com", False), ("local", False),
])
def test_host_allowed(header: str, ok: bool) -> None:
    # 203.0.113.9 stands in for an address of a local interface.
    assert security.host_allowed(header, hostname="MyHost",
                                 local_ips=lambda: ["203.0.113.9"]) is ok


def test_bearer_and_constant_time_compare() -> None:
    assert security.bearer_token("Bearer abc") == "abc"
    assert security.bearer_token("bearer  abc ") == "abc"
    assert security.bearer_token("Basic abc") is None
    assert security.bearer_token("Bearer ") is None
    assert security.bearer_token(None) is None
    assert security.key_accepted("k2", ("k1", "k2"))
    assert not security.key_accepted("k3", ("k1", "k2"))
    assert not security.key_accepted("k", ("k1",))
    assert not security.key_accepted(None, ("k1",))
    assert not security.key_accepted("", ())


def test_load_api_keys_env_and_file(tmp_path: Path) -> None:
    f = tmp_path / "keys"
    f.write_text("# ops\nfilekey\n\n  other  \nenvkey\n")
    s = load_settings({"OLLAMA_API_KEYS": "envkey, second", "OLLAMA_API_KEYS_FILE": str(f)})
    assert security.load_api_keys(s) == ("envkey", "second", "filekey", "other")
    missing = load_settings({"OLLAMA_API_KEYS_FILE": str(tmp_path / "nope")})
    with pytest.raises(ValueError, match="OLLAMA_API_KEYS_FILE"):
        security.load_api_keys(missing)
    with pytest.raises(SystemExit, match="OLLAMA_API_KEYS_FILE"):
        security.middlewares(missing)


def test_startup_warning_only_when_exposed_without_keys() -> None:
    assert security.startup_warnings(load_settings({"OLLAMA_HOST": "127.0.0.1:1"})) == []
    w = security.startup_warnings(load_settings({"OLLAMA_HOST": "0.0.0.0:1"}))
    assert len(w) == 1 and "OLLAMA_API_KEYS" in w[0]
    assert security.startup_warnings(load_settings({"OLLAMA_HOST": ":1"}))
    assert security.startup_warnings(
        load_settings({"OLLAMA_HOST": "0.0.0.0:1", "OLLAMA_API_KEYS": "k"})) == []


# ------------------------------------------------------------------- middlewares in an app

async def _stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    await resp.write(b'{"a":1}\n')
    await resp.write_eof()
    return resp


@pytest.fixture
async def make_client() -> AsyncIterator:
    clients: list[TestClient] = []

    async def make(env: dict[str, str]) -> TestClient:
        app = create_app(load_settings(env))
        app.router.add_post("/test/stream", _stream)
        c = TestClient(TestServer(app, host="127.0.0.1"))
        await c.start_server()
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.close()


async def test_preflight_allowed_origin(make_client) -> None:
    c = await make_client({"OLLAMA_HOST": "127.0.0.1:11434"})
    r = await c.options("/api/version", headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert r.status == 204
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert r.headers["Access-Control-Allow-Methods"] == security.ALLOW_METHODS
    assert "X-Stainless-Os" in r.headers["Access-Control-Allow-Headers"]
    assert "X-Api-Key" in r.headers["Access-Control-Allow-Headers"]  # browser Anthropic clients
    assert r.headers["Access-Control-Max-Age"] == "43200"
    assert "Access-Control-Allow-Credentials" not in r.headers
    vary = ",".join(r.headers.getall("Vary"))
    assert "Origin" in vary and "Access-Control-Request-Method" in vary


async def test_foreign_origin_forbidden(make_client) -> None:
    c = await make_client({})
    r = await c.get("/api/version", headers={"Origin": "http://evil.com"})
    assert r.status == 403
    assert (await r.json())["error"] == "origin not allowed"
    r = await c.options("/api/chat", headers={
        "Origin": "http://evil.com", "Access-Control-Request-Method": "POST"})
    assert r.status == 403


async def test_simple_and_streaming_responses_carry_cors_headers(make_client) -> None:
    c = await make_client({"OLLAMA_ORIGINS": "https://ui.example.com"})
    r = await c.get("/api/version", headers={"Origin": "https://ui.example.com"})
    assert r.status == 200
    assert r.headers["Access-Control-Allow-Origin"] == "https://ui.example.com"
    assert "Origin" in r.headers.getall("Vary")
    r = await c.post("/test/stream", headers={"Origin": "https://ui.example.com"})
    assert r.status == 200 and await r.read() == b'{"a":1}\n'
    assert r.headers["Access-Control-Allow-Origin"] == "https://ui.example.com"
    # Errors get them too, so the browser can read the {"error"} body.
    r = await c.get("/nope", headers={"Origin": "https://ui.example.com"})
    assert r.status == 404
    assert r.headers["Access-Control-Allow-Origin"] == "https://ui.example.com"
    # No Origin: no CORS headers at all.
    r = await c.get("/api/version")
    assert "Access-Control-Allow-Origin" not in r.headers


async def test_origins_star_allows_all(make_client) -> None:
    c = await make_client({"OLLAMA_ORIGINS": "*"})
    r = await c.get("/api/version", headers={"Origin": "http://anything.example"})
    assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "*"


async def test_host_check_on_loopback(make_client) -> None:
    c = await make_client({"OLLAMA_HOST": "127.0.0.1:11434"})
    r = await c.get("/api/version", headers={"Host": "evil.example.com"})
    assert r.status == 403 and (await r.json()) == {"error": "host not allowed"}
    for ok in ("localhost:11434", "127.0.0.1", "box.local", "10.0.0.5:11434"):
        r = await c.get("/api/version", headers={"Host": ok})
        assert r.status == 200, ok
    r = await c.options("/api/version", headers={"Host": "box.local"})
    assert r.status == 204


async def test_no_host_check_when_bound_to_all_interfaces(make_client) -> None:
    c = await make_client({"OLLAMA_HOST": "0.0.0.0:11434"})
    r = await c.get("/api/version", headers={"Host": "ollama.example.com"})
    assert r.status == 200


async def test_api_keys(make_client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c = await make_client({"OLLAMA_API_KEYS": "s3cret-one,s3cret-two"})
    r = await c.get("/api/version")
    assert r.status == 401 and (await r.json()) == {"error": "unauthorized"}
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await c.get("/api/version", headers={"Authorization": "Bearer wrong-key"})
    assert r.status == 401
    r = await c.get("/api/version", headers={"Authorization": "Basic s3cret-one"})
    assert r.status == 401
    r = await c.get("/v1/models", headers={"Authorization": "Bearer nope"})
    body = await r.json()
    assert r.status == 401 and body["error"]["message"] == "unauthorized"  # OpenAI envelope
    for key in ("s3cret-one", "s3cret-two"):
        r = await c.get("/api/version", headers={"Authorization": f"Bearer {key}"})
        assert r.status == 200
    # Preflights never carry credentials, so they are answered before the key check.
    r = await c.options("/api/chat", headers={
        "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"})
    assert r.status == 204
    assert "s3cret" not in caplog.text and "wrong-key" not in caplog.text


# ------------------------------------------------------------------------------ key scopes

def test_scoped_keys_from_env_and_file(tmp_path: Path) -> None:
    """OLLAMA_API_KEYS stay admin; OLLAMAPY_INFERENCE_KEYS and `key scope` file lines add more."""
    f = tmp_path / "keys"
    f.write_text("# ops team\nfile-admin\nfile-inf inference\n  file-adm2   admin  # ci\n\n")
    s = load_settings({"OLLAMA_API_KEYS": "env-admin", "OLLAMAPY_INFERENCE_KEYS": "env-inf",
                       "OLLAMA_API_KEYS_FILE": str(f)})
    assert security.load_scoped_keys(s) == {
        "env-admin": "admin", "env-inf": "inference", "file-admin": "admin",
        "file-inf": "inference", "file-adm2": "admin"}
    assert set(security.load_api_keys(s)) == {"env-admin", "env-inf", "file-admin", "file-inf",
                                              "file-adm2"}
    f.write_text("ok\nk superuser\n")
    with pytest.raises(ValueError, match=r"line 2: expected .*inference.*admin") as e:
        security.load_scoped_keys(s)
    assert "superuser" not in str(e.value)  # the line may hold a second key: never echoed
    f.write_text("env-inf admin\n")
    with pytest.raises(ValueError, match="both"):
        security.load_scoped_keys(s)


@pytest.mark.parametrize(("method", "path", "scope"), [
    ("GET", "/", "inference"), ("HEAD", "/", "inference"), ("GET", "/api/version", "inference"),
    ("POST", "/api/generate", "inference"), ("POST", "/api/chat", "inference"),
    ("POST", "/api/embed", "inference"), ("POST", "/api/embeddings", "inference"),
    ("GET", "/api/tags", "inference"), ("POST", "/api/show", "inference"),
    ("GET", "/api/ps", "inference"), ("POST", "/v1/chat/completions", "inference"),
    ("GET", "/v1/models", "inference"), ("GET", "/v1/models/smollm2:135m", "inference"),
    ("POST", "/v1/messages", "inference"), ("POST", "/v1/responses", "inference"),
    ("POST", "/api/create", "admin"), ("POST", "/api/blobs/sha256:ab", "admin"),
    ("HEAD", "/api/blobs/sha256:ab", "admin"), ("POST", "/api/copy", "admin"),
    ("DELETE", "/api/delete", "admin"), ("POST", "/api/pull", "admin"),
    ("POST", "/api/push", "admin"), ("DELETE", "/v1/models/x", "admin"),
    ("GET", "/api/tags/../create", "admin"), ("POST", "/api/anything-new", "admin"),
    ("GET", "/api/generate", "admin"), ("POST", "/api/tags", "admin"),
])
def test_route_scope(method: str, path: str, scope: str) -> None:
    """Management and anything unknown need admin; only the listed reads and runs are open to
    inference keys."""
    assert security.route_scope(method, path) == scope


def test_public_routes_come_from_settings_only() -> None:
    """One scheme for routes served without a key: the operator opens /metrics alone with
    OLLAMAPY_METRICS_AUTH=none; nothing else is ever public."""
    pub = security.public_routes(load_settings({"OLLAMAPY_METRICS_AUTH": "none"}))
    assert security.route_scope("GET", "/metrics", pub) == "public"
    assert security.route_scope("POST", "/metrics", pub) == "admin"
    assert security.route_scope("GET", "/api/tags", pub) == "inference"
    assert security.public_routes(load_settings({})) == frozenset()
    assert security.route_scope("GET", "/metrics") == "inference"


async def test_inference_key_is_refused_on_management_routes(make_client) -> None:
    c = await make_client({"OLLAMA_API_KEYS": "adm", "OLLAMAPY_INFERENCE_KEYS": "inf"})
    inf = {"Authorization": "Bearer inf"}
    for path in ("/api/version", "/api/tags", "/api/ps", "/v1/models"):
        r = await c.get(path, headers=inf)
        assert r.status == 200, path
    for method, path in (("POST", "/api/copy"), ("DELETE", "/api/delete"), ("POST", "/api/pull"),
                         ("POST", "/api/push"), ("POST", "/api/create"),
                         ("POST", "/api/blobs/sha256:" + "0" * 64)):
        r = await c.request(method, path, headers=inf, json={"model": "m"})
        assert r.status == 403, path
        body = await r.json()
        assert body == {"error": "this API key is not allowed to manage models: "
                                 f"{method} {path} needs an admin key"}
    # admin keys get past the scope check (the handler then judges the body)
    r = await c.post("/api/copy", headers={"Authorization": "Bearer adm"}, json={})
    assert r.status not in (401, 403)
    # Anthropic clients send x-api-key
    r = await c.get("/api/tags", headers={"x-api-key": "inf"})
    assert r.status == 200
    r = await c.post("/api/copy", headers={"x-api-key": "inf"}, json={})
    assert r.status == 403
    r = await c.get("/api/tags", headers={"x-api-key": "nope"})
    assert r.status == 401


async def test_scope_errors_in_the_openai_envelope(make_client) -> None:
    c = await make_client({"OLLAMAPY_INFERENCE_KEYS": "inf"})
    r = await c.delete("/v1/models/x", headers={"Authorization": "Bearer inf"})
    body = await r.json()
    assert r.status == 403 and "admin key" in body["error"]["message"]
    assert body["error"]["type"] == "api_error"


async def test_per_path_error_renderer_hook(make_client) -> None:
    """Another API family (Anthropic's /v1/messages) renders its own 401 shape."""
    from ollamapy.server import middleware

    def anthropic(status: int, message: str) -> web.Response:
        return web.json_response({"type": "error", "error": {
            "type": "authentication_error", "message": message}}, status=status)

    middleware.register_error_renderer("/v1/messages", anthropic)
    try:
        c = await make_client({"OLLAMA_API_KEYS": "k"})
        r = await c.post("/v1/messages", json={})
        assert r.status == 401
        assert (await r.json())["error"]["type"] == "authentication_error"
        r = await c.post("/v1/chat/completions", json={})
        assert (await r.json())["error"]["type"] == "api_error"  # still OpenAI's
    finally:
        middleware.unregister_error_renderer("/v1/messages")


async def test_stopping_a_model_needs_admin(make_client) -> None:
    """`ollama stop` is a generate/chat with keep_alive 0 and nothing to run: it unloads the
    model under every other user, so it is management."""
    c = await make_client({"OLLAMA_API_KEYS": "adm", "OLLAMAPY_INFERENCE_KEYS": "inf"})
    for path, body in (("/api/generate", {"model": "m", "keep_alive": 0}),
                       ("/api/chat", {"model": "m", "messages": [], "keep_alive": 0})):
        r = await c.post(path, json=body, headers={"Authorization": "Bearer inf"})
        assert r.status == 403, await r.text()
        assert "admin key" in (await r.json())["error"]
        r = await c.post(path, json=body, headers={"Authorization": "Bearer adm"})
        assert r.status != 403
