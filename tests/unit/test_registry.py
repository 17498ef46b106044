"""Pure pieces of pull/push: names -> URLs, auth, manifest validation, part planning, resume
records, range checks, wire types."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.parse
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from ollamapy.api.decode import decode as decode_request
from ollamapy.api.registry import ProgressResponse, PullRequest, PushRequest
from ollamapy.errors import BadRequest, OllamaError
from ollamapy.registry import auth
from ollamapy.registry.download import (
    DownloadConfig,
    Fatal,
    Part,
    check_range_response,
    mismatch_message,
    plan_parts,
    restore_parts,
)
from ollamapy.registry.names import origin, resolve, target
from ollamapy.store.manifest import parse_manifest
from ollamapy.store.names import ModelName

HEX = "a" * 64
MB = 1000 * 1000


# ---------- names ----------
def test_default_name_targets_ollama_registry() -> None:
    t = target(ModelName.parse("llama3.2"), insecure=False)
    assert t.base == "https://registry.ollama.ai"
    assert t.manifest_url == "https://registry.ollama.ai/v2/library/llama3.2/manifests/latest"
    assert t.blob_url(f"sha256:{HEX}") == \
        f"https://registry.ollama.ai/v2/library/llama3.2/blobs/sha256:{HEX}"
    assert t.upload_url == "https://registry.ollama.ai/v2/library/llama3.2/blobs/uploads/"


@pytest.mark.parametrize("text", ["hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
                                  "huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"])
def test_hugging_face_names_use_the_same_protocol(text: str) -> None:
    t = target(ModelName.parse(text), insecure=False)
    host = text.split("/")[0]
    assert t.manifest_url == \
        f"https://{host}/v2/bartowski/Llama-3.2-1B-Instruct-GGUF/manifests/Q4_K_M"


def test_insecure_forces_http_and_http_names_need_it() -> None:
    name = ModelName.parse("127.0.0.1:5000/ns/m:t")
    assert target(name, insecure=True).base == "http://127.0.0.1:5000"
    assert target(name, insecure=False).base == "https://127.0.0.1:5000"
    with pytest.raises(OllamaError, match="insecure protocol http"):
        target(ModelName.parse("http://127.0.0.1:5000/ns/m:t"), insecure=False)
    assert target(ModelName.parse("http://127.0.0.1:5000/ns/m:t"), True).base.startswith("http:")


def test_origin_and_relative_locations() -> None:
    assert origin("http://A:1/x") == origin("http://a:1/y")
    assert origin("http://a:1/x") != origin("http://a:2/x")
    assert origin("https://a/x") != origin("http://a/x")
    assert resolve("http://r:1/v2/a/b/blobs/uploads/", "/v2/a/b/blobs/uploads/u1") == \
        "http://r:1/v2/a/b/blobs/uploads/u1"
    assert resolve("http://r:1/x", "http://cdn/y?sig=1") == "http://cdn/y?sig=1"


# ---------- auth ----------
def test_parse_challenge() -> None:
    ch = auth.parse_challenge('Bearer realm="https://r.io/token",service="r.io",'
                              'scope="repository:library/m:pull"')
    assert ch == auth.Challenge("https://r.io/token", "r.io", "repository:library/m:pull")
    assert auth.parse_challenge('Basic realm="x"') is None
    assert auth.parse_challenge("") is None
    assert auth.parse_challenge('Bearer service="x"') is None


def test_token_url_is_sorted_and_escaped_like_go() -> None:
    ch = auth.Challenge("https://r.io/token?x=1", "r.io", "repository:a/b:pull repository:c:push")
    url = auth.token_url(ch, now=1700000000, nonce="abc")
    parts = urllib.parse.urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "r.io", "/token")
    assert parts.query == ("nonce=abc&scope=repository%3Aa%2Fb%3Apull&"
                           "scope=repository%3Ac%3Apush&service=r.io&ts=1700000000&x=1")


def test_nonce_is_fresh_base64url() -> None:
    ch = auth.Challenge("https://r.io/token", "s", "x")
    n1 = urllib.parse.parse_qs(urllib.parse.urlsplit(auth.token_url(ch)).query)["nonce"][0]
    n2 = urllib.parse.parse_qs(urllib.parse.urlsplit(auth.token_url(ch)).query)["nonce"][0]
    assert n1 != n2 and len(base64.urlsafe_b64decode(n1 + "==")) == 16


@pytest.mark.parametrize("realm, registry, ok", [
    ("https://r.io/token", "https://r.io", True),
    ("https://r.io:443/token", "https://r.io", False),      # host:port must match exactly
    ("https://evil.io/token", "https://r.io", False),
    ("https://r.io.evil.io/token", "https://r.io", False),
    ("http://r.io/token", "https://r.io", False),            # no downgrade of the signed request
    ("http://127.0.0.1:5000/token", "http://127.0.0.1:5000", True),
    ("http://127.0.0.1:5001/token", "http://127.0.0.1:5000", False),
    ("file:///etc/passwd", "https://r.io", False),
])
def test_realm_must_be_the_registry(realm: str, registry: str, ok: bool) -> None:
    if ok:
        auth.check_realm(realm, registry)
    else:
        with pytest.raises(OllamaError):
            auth.check_realm(realm, registry)


def test_realm_error_wording() -> None:
    with pytest.raises(OllamaError, match=r'realm host "evil\.io" does not match original '
                                          r'host "r\.io"'):
        auth.check_realm("https://evil.io/token", "https://r.io")


def test_keypair_created_once_and_signatures_verify(tmp_path: Path) -> None:
    path = tmp_path / ".ollama" / "id_ed25519"
    pub = auth.ensure_keypair(path)
    assert pub is not None and pub.startswith("ssh-ed25519 ")
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert (tmp_path / ".ollama" / "id_ed25519.pub").read_text().strip() == pub
    before = path.read_bytes()
    assert auth.ensure_keypair(path) is None and path.read_bytes() == before

    key = auth.load_key(path)
    data = auth.signing_payload("https://r.io/token?nonce=x")
    empty = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()
    assert data == f"GET,https://r.io/token?nonce=x,{empty}".encode()
    header = auth.sign(key, data)
    wire, sig = header.split(":")
    assert wire == pub.split(" ")[1]
    verifier = serialization.load_ssh_public_key(pub.encode())
    verifier.verify(base64.b64decode(sig), data)  # type: ignore[union-attr]


def test_load_key_errors_are_ollama_errors(tmp_path: Path) -> None:
    with pytest.raises(OllamaError, match="open"):
        auth.load_key(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.write_text("not a key")
    with pytest.raises(OllamaError, match="invalid private key"):
        auth.load_key(bad)


# ---------- manifests ----------
def _manifest(*digests: str, size: int = 5) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": "x",
                       "config": {"mediaType": "c", "digest": f"sha256:{'c' * 64}", "size": 3},
                       "layers": [{"mediaType": "m", "digest": d, "size": size}
                                  for d in digests]}).encode()


def test_manifest_blobs_are_layers_then_config_deduplicated() -> None:
    m = parse_manifest(_manifest(f"sha256-{'A' * 64}", f"sha256:{'a' * 64}"))
    assert [b.digest for b in m.blobs()] == [f"sha256:{'a' * 64}", f"sha256:{'c' * 64}"]


@pytest.mark.parametrize("digest", [
    "sha256:../../../../etc/passwd",
    "sha256:" + "a" * 63 + "/",
    "../sha256-" + "a" * 64,
    "sha256:" + "a" * 64 + "/../../x",
    "md5:" + "a" * 32,
    "",
])
def test_manifest_with_bad_digest_is_rejected(digest: str) -> None:
    with pytest.raises(BadRequest, match="invalid digest format"):
        parse_manifest(_manifest(digest))


@pytest.mark.parametrize("data", [
    b"not json", b"[]", b'{"layers": "x"}', b'{"layers": []}',
    _manifest(f"sha256:{HEX}", size=-1),
    json.dumps({"layers": [{"digest": f"sha256:{HEX}", "size": "5"}]}).encode(),
    json.dumps({"layers": [{"digest": f"sha256:{HEX}", "size": 1 << 60}]}).encode(),
    b"{" * 10 + b" " * (5 * 1024 * 1024),
])
def test_malformed_manifests_are_rejected(data: bytes) -> None:
    with pytest.raises(OllamaError):
        parse_manifest(data)


# ---------- parts ----------
def test_part_sizes_follow_ollama() -> None:
    cfg = DownloadConfig()
    parts = plan_parts(2019377376, cfg)  # llama3.2 weights: 2.0 GB / 16 -> 126 MB parts
    assert len(parts) == 16 and parts[0].size == 2019377376 // 16
    assert sum(p.size for p in parts) == 2019377376
    small = plan_parts(98362432, cfg)  # below 16 x 100 MB: clamped up to 100 MB -> one part
    assert [(p.offset, p.size) for p in small] == [(0, 98362432)]
    big = plan_parts(40_000 * MB, cfg)  # clamped down to 1000 MB parts
    assert len(big) == 40 and {p.size for p in big} == {1000 * MB}
    assert plan_parts(0, cfg) == []
    tiny = plan_parts(10, DownloadConfig(min_part=3))
    assert [(p.n, p.offset, p.size) for p in tiny] == [(0, 0, 3), (1, 3, 3), (2, 6, 3), (3, 9, 1)]


def test_part_records_round_trip_and_bad_ones_are_refused() -> None:
    parts = plan_parts(10, DownloadConfig(min_part=4))
    parts[1].completed = 2
    records = [p.to_json() for p in parts]
    assert json.loads(records[1]) == {"N": 1, "Offset": 4, "Size": 4, "Completed": 2}
    back = restore_parts(list(reversed(records)), 10)
    assert back is not None and [(p.n, p.offset, p.size, p.completed) for p in back] == \
        [(0, 0, 4, 0), (1, 4, 4, 2), (2, 8, 2, 0)]
    assert restore_parts(records, 11) is None                       # other size
    assert restore_parts(records[:2], 10) is None                  # a part is missing
    assert restore_parts([*records, records[0]], 10) is None       # duplicated part
    assert restore_parts([b"{", *records[1:]], 10) is None         # unreadable record
    over = Part(1, 4, 4, 5).to_json()
    assert restore_parts([records[0], over, records[2]], 10) is None  # completed > size
    assert restore_parts([], 10) is None


def test_range_answers_must_be_exact() -> None:
    check_range_response(206, {"Content-Range": "bytes 5-9/10"}, 5, 10, 10)
    check_range_response(206, {"Content-Range": "bytes 5-9/*"}, 5, 10, 10)
    check_range_response(200, {"Content-Length": "10"}, 0, 10, 10)
    with pytest.raises(Fatal, match="size mismatch"):
        check_range_response(206, {"Content-Range": "bytes 5-9/11"}, 5, 10, 10)
    with pytest.raises(Fatal, match="size mismatch"):
        check_range_response(200, {"Content-Length": "12"}, 0, 10, 10)
    with pytest.raises(Fatal):
        check_range_response(206, {"Content-Range": "bytes 0-9/10"}, 5, 10, 10)
    with pytest.raises(Fatal):
        check_range_response(200, {"Content-Length": "10"}, 5, 10, 10)
    with pytest.raises(Fatal):
        check_range_response(206, {}, 5, 10, 10)


def test_mismatch_message_uses_ollama_wording() -> None:
    # Ollama's wording, except the received digest (issue 11: no hash of what a redirect target
    # sent is returned; it is logged instead)
    got = "sha256:" + "b" * 64
    msg = mismatch_message(f'digest mismatch, expected "sha256:{HEX}", got "{got}"',
                           f"sha256:{HEX}")
    assert msg == (f"digest mismatch, file must be downloaded again: want sha256:{HEX}, "
                   "got a different digest")
    assert "b" * 64 not in msg


# ---------- wire types ----------
def test_progress_omits_empty_fields_like_go() -> None:
    assert ProgressResponse(status="success").wire() == {"status": "success"}
    assert ProgressResponse(status="pulling x", digest="d", total=5).wire() == \
        {"status": "pulling x", "digest": "d", "total": 5}
    assert ProgressResponse(status="p", digest="d", total=5, completed=5).wire()["completed"] == 5


def test_request_decoding() -> None:
    r = decode_request(PullRequest, b'{"name": "m", "insecure": true, "username": "u"}')
    assert (r.target(), r.insecure, r.streaming()) == ("m", True, True)
    r = decode_request(PushRequest, b'{"model": "m", "stream": false, "insecure": null}')
    assert (r.target(), r.insecure, r.streaming()) == ("m", False, False)
    with pytest.raises(BadRequest, match="missing request body"):
        decode_request(PullRequest, b"  ")
    with pytest.raises(BadRequest, match="invalid character"):
        decode_request(PullRequest, b"{x")
    with pytest.raises(BadRequest, match="cannot unmarshal array into Go value"):
        decode_request(PullRequest, b"[]")
    with pytest.raises(BadRequest, match=r"cannot unmarshal string into Go struct field "
                                         r"PullRequest.insecure of type bool"):
        decode_request(PullRequest, b'{"model": "m", "insecure": "yes"}')
    with pytest.raises(BadRequest, match=r"PushRequest\.model of type string"):
        decode_request(PushRequest, b'{"model": 5}')


# ---------- proxies ----------
def test_proxy_from_environment_like_go(monkeypatch: pytest.MonkeyPatch) -> None:
    from ollamapy.registry.transport import proxy_for

    for k in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
              "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(k, raising=False)
    assert proxy_for("https://registry.ollama.ai/v2/") is None
    monkeypatch.setenv("HTTPS_PROXY", "proxy.corp:3128")
    assert proxy_for("https://registry.ollama.ai/v2/") == "http://proxy.corp:3128"
    assert proxy_for("http://registry.ollama.ai/v2/") is None  # no HTTP_PROXY set
    assert proxy_for("https://127.0.0.1:5000/v2/") is None     # loopback never proxied
    assert proxy_for("https://localhost/v2/") is None
    monkeypatch.setenv("NO_PROXY", ".ollama.ai,hf.co")
    assert proxy_for("https://registry.ollama.ai/v2/") is None
    assert proxy_for("https://hf.co/v2/") is None
    assert proxy_for("https://example.com/v2/") == "http://proxy.corp:3128"
