"""Registry auth: the ed25519 key in ~/.ollama/id_ed25519 and Ollama's signed token request.

On a 401 with `WWW-Authenticate: Bearer realm=...`, Ollama asks the realm for a token with a GET
whose `Authorization` is `<base64 ssh public key>:<base64 ed25519 signature>` over
`GET,<token url>,<base64(hex(sha256("")))>`. The realm must be on the registry's own host (so a
malicious registry cannot make us sign requests for, or send tokens to, someone else:
CVE-2025-51471) and must not downgrade https to http.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ollamapy.errors import OllamaError
from ollamapy.paths import ollama_home

KEY_NAME = "id_ed25519"


def default_key_path() -> Path:
    return ollama_home() / KEY_NAME


def ensure_keypair(path: Path | None = None) -> str | None:
    """Create the key pair if missing (like `ollama serve`); return the new public key line, or
    None when a key already existed. Private key: OpenSSH PEM, 0600; public: authorized_keys."""
    path = path or default_key_path()
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # never clobber a key another process just wrote
    except FileExistsError:
        return None
    finally:
        tmp.unlink(missing_ok=True)
    pub = public_key_line(key)
    path.with_name(path.name + ".pub").write_text(pub + "\n")
    return pub


def load_key(path: Path | None = None) -> Ed25519PrivateKey:
    path = path or default_key_path()
    try:
        data = path.read_bytes()
    except OSError as e:
        raise OllamaError(f"open {path}: {e.strerror or e}") from None
    try:
        key = serialization.load_ssh_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise OllamaError(f"invalid private key {path}: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise OllamaError(f"invalid private key {path}: not an ed25519 key")
    return key


def public_key_line(key: Ed25519PrivateKey) -> str:
    """`ssh-ed25519 AAAA...` (authorized_keys format, no comment)."""
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    """Ollama's auth.Sign: `<base64 ssh-wire public key>:<base64 signature>`."""
    pub = public_key_line(key).split(" ")[1]
    return f"{pub}:{base64.b64encode(key.sign(data)).decode()}"


@dataclass(frozen=True)
class Challenge:
    realm: str
    service: str
    scope: str


_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*"((?:[^"\\]|\\.)*)"')


def parse_challenge(header: str | None) -> Challenge | None:
    """`Bearer realm="...",service="...",scope="..."` -> Challenge (None if not Bearer/realm)."""
    if not header:
        return None
    scheme, _, params = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    values = {k.lower(): v.replace('\\"', '"') for k, v in _PARAM.findall(params)}
    if not values.get("realm"):
        return None
    return Challenge(values["realm"], values.get("service", ""), values.get("scope", ""))


def token_url(ch: Challenge, now: int | None = None, nonce: str | None = None) -> str:
    """The realm URL plus service, scope(s), ts and nonce, encoded like Go's url.Values.Encode
    (keys sorted, QueryEscape) — the registry checks the signature over this exact string."""
    parts = urllib.parse.urlsplit(ch.realm)
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    pairs.append(("service", ch.service))
    pairs.extend(("scope", s) for s in ch.scope.split(" "))
    pairs.append(("ts", str(int(time.time()) if now is None else now)))
    if nonce is None:
        nonce = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
    pairs.append(("nonce", nonce))
    pairs.sort(key=lambda kv: kv[0])  # stable: values of one key keep their order, as in Go
    query = urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote_plus)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def signing_payload(url: str) -> bytes:
    empty = hashlib.sha256(b"").hexdigest().encode()
    return f"GET,{url},{base64.b64encode(empty).decode()}".encode()


def check_realm(realm_url: str, registry_url: str) -> None:
    """Refuse a realm on another host than the registry's, or an http realm for an https
    registry: the signed request and the token must never leave the registry."""
    realm = urllib.parse.urlsplit(realm_url)
    reg = urllib.parse.urlsplit(registry_url)
    if realm.scheme not in ("http", "https"):
        raise OllamaError(f"invalid auth realm {realm_url!r}")
    if realm.netloc.lower() != reg.netloc.lower():
        raise OllamaError(
            f"realm host {realm.netloc!r} does not match original host {reg.netloc!r}"
            .replace("'", '"'))
    if reg.scheme == "https" and realm.scheme != "https":
        raise OllamaError(f"refusing insecure auth realm {realm_url!r} for an https registry")
