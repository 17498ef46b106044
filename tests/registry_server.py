"""A local Ollama-protocol registry for the pull/push tests (aiohttp, loopback only).

It serves manifests and blobs (ranged GETs, HEAD), accepts docker-v2 uploads (POST/PATCH/PUT,
cross-repo mounts) and manifest PUTs, and has knobs for everything a bad network or a malicious
registry can do: drop the connection mid-blob, stall, serve wrong bytes, serve more bytes than the
manifest declares, put `../` in a digest, redirect blob downloads (and uploads) to another host
(the "CDN"), and require a token whose realm may even point at a third ("evil") host. It counts
every blob byte it sends and records every request, so tests can prove what was (not) sent where.

Runs in its own thread with its own event loop, so both sync e2e tests and async tests can use it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
MODEL_TYPE = "application/vnd.ollama.image.model"
CHUNK = 64 * 1024


INTERNAL_SECRET = "AWS_SECRET_ACCESS_KEY=internal-only-credential"


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def sha256_path(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        _FILE_DIGESTS[key] = "sha256:" + h.hexdigest()
    return _FILE_DIGESTS[key]


@dataclass
class Blob:
    size: int
    data: bytes | None = None
    path: Path | None = None

    def read(self, start: int, stop: int) -> bytes:
        if self.data is not None:
            return self.data[start:stop]
        assert self.path is not None
        with self.path.open("rb") as f:
            f.seek(start)
            return f.read(stop - start)


@dataclass
class Knobs:
    require_token: bool = False
    realm: str | None = None          # WWW-Authenticate realm (default: this registry's /token)
    drop_after: int | None = None     # cut the connection after this many bytes of a blob body
    drops: int = 1                    # ... for this many responses
    stall_after: int | None = None    # stop sending after this many bytes of a blob body
    stall_seconds: float = 3.0
    stalls: int = 1
    wrong_bytes: bool = False         # flip one byte in every blob body served
    extra_bytes: int = 0              # the blob on the wire is this much longer than declared
    redirect: bool = False            # blob GETs -> 307 to the CDN host
    upload_redirect: bool = False     # upload PATCHes -> 307 "PUT it to the CDN instead"
    fail_manifest: int | None = None  # manifest GETs answer this status
    head_missing: bool = False        # blob HEADs say 404 (as for a repo that lacks the blob)
    slow: float = 0.0                 # pause after every 64 KB sent
    redirect_to: str | None = None    # blob GETs -> 307 to this URL ("{digest}" filled in)


@dataclass
class Request:
    server: str                       # "registry" | "cdn" | "evil" | "internal"
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Stats:
    bytes_served: int = 0             # blob body bytes written, everywhere
    range_bytes: int = 0              # ... of them in answers to Range requests
    requests: list[Request] = field(default_factory=list)
    tokens_issued: int = 0
    inflight: int = 0                 # blob bodies being sent right now
    max_inflight: int = 0

    def hits(self, server: str) -> list[Request]:
        return [r for r in self.requests if r.server == server]


class TestRegistry:
    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        self.knobs = Knobs()
        self.stats = Stats()
        self.blobs: dict[str, Blob] = {}
        self.manifests: dict[tuple[str, str], bytes] = {}   # (ns/model, tag) -> bytes
        self.uploads: dict[str, bytearray] = {}
        self.tokens: set[str] = set()
        self.public_keys: list[str] = []
        self.host = ""       # 127.0.0.1:<port> of the registry
        self.cdn_host = ""
        self.evil_host = ""
        self.internal_host = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self._lock = threading.Lock()

    # ---------- content ----------
    def add_blob(self, data: bytes | None = None, path: Path | None = None) -> tuple[str, int]:
        if path is not None:
            digest, size = sha256_path(path), path.stat().st_size
            self.blobs[digest] = Blob(size, path=path)
        else:
            assert data is not None
            digest, size = sha256_bytes(data), len(data)
            self.blobs[digest] = Blob(size, data=data)
        return digest, size

    def add_model(self, repo: str, tag: str, gguf: Path,
                  extra_layers: list[tuple[str, bytes]] = ()) -> bytes:
        """A manifest like Ollama's: model layer (the GGUF), extra text layers, config blob."""
        mdigest, msize = self.add_blob(path=gguf)
        layers = [{"mediaType": MODEL_TYPE, "digest": mdigest, "size": msize}]
        for media, data in extra_layers:
            d, s = self.add_blob(data=data)
            layers.append({"mediaType": media, "digest": d, "size": s})
        config = json.dumps({"model_format": "gguf", "model_family": "llama",
                             "model_families": ["llama"], "model_type": "135M",
                             "file_type": "Q4_1", "architecture": "amd64",
                             "os": "linux"}).encode()
        cdigest, csize = self.add_blob(data=config)
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                    "config": {"mediaType": CONFIG_TYPE, "digest": cdigest, "size": csize},
                    "layers": layers}
        data = json.dumps(manifest).encode()
        self.manifests[(repo, tag)] = data
        return data

    def add_manifest(self, repo: str, tag: str, manifest: dict[str, Any] | bytes) -> bytes:
        data = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        self.manifests[(repo, tag)] = data
        return data

    # ---------- lifecycle ----------
    def start(self) -> TestRegistry:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._start())
            except BaseException as e:  # surfaced to the caller below
                errors.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._stop())
            pending = asyncio.all_tasks(loop)  # e.g. a handler still stalling: end it quietly
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="test-registry", daemon=True)
        self._thread.start()
        if not ready.wait(10) or errors:
            raise RuntimeError(f"test registry did not start: {errors}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> TestRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _site(self, app: web.Application, host: str = "127.0.0.1") -> str:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        self._runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"{host}:{port}"

    async def _start(self) -> None:
        reg = web.Application(client_max_size=1 << 30)
        reg.router.add_get("/v2/", self._ping)
        reg.router.add_get("/v2/{ns}/{model}/manifests/{tag}", self._get_manifest)
        reg.router.add_route("PUT", "/v2/{ns}/{model}/manifests/{tag}", self._put_manifest)
        reg.router.add_get("/v2/{ns}/{model}/blobs/{digest}", self._get_blob)
        reg.router.add_route("POST", "/v2/{ns}/{model}/blobs/uploads/", self._start_upload)
        reg.router.add_route("PATCH", "/v2/{ns}/{model}/blobs/uploads/{id}", self._patch_upload)
        reg.router.add_route("PUT", "/v2/{ns}/{model}/blobs/uploads/{id}", self._finish_upload)
        reg.router.add_get("/token", self._token)
        reg.middlewares.append(self._record("registry"))
        cdn = web.Application(client_max_size=1 << 30)
        cdn.router.add_get("/cdn/{digest}", self._cdn_blob)
        cdn.router.add_put("/cdn-upload/{id}", self._cdn_upload)
        cdn.middlewares.append(self._record("cdn"))
        evil = web.Application()
        evil.router.add_route("*", "/{tail:.*}", self._evil)
        evil.middlewares.append(self._record("evil"))
        self.host = await self._site(reg)
        self.cdn_host = await self._site(cdn)
        self.evil_host = await self._site(evil)
        # an "internal service" (think cloud metadata / admin API) on another loopback address
        internal = web.Application()
        internal.router.add_route("*", "/{tail:.*}", self._internal)
        internal.middlewares.append(self._record("internal"))
        self.internal_host = await self._site(internal, "127.0.0.2")

    async def _internal(self, request: web.Request) -> web.Response:
        status = 500 if request.query.get("fail") else 200
        return web.Response(status=status, text=INTERNAL_SECRET)

    async def _stop(self) -> None:
        for r in self._runners:
            await r.cleanup()

    def _record(self, server: str) -> Any:
        @web.middleware
        async def mw(request: web.Request, handler: Any) -> web.StreamResponse:
            with self._lock:
                self.stats.requests.append(Request(server, request.method, request.path_qs,
                                                   dict(request.headers)))
            return await handler(request)

        return mw

    # ---------- auth ----------
    def _authorized(self, request: web.Request) -> web.Response | None:
        if not self.knobs.require_token:
            return None
        h = request.headers.get("Authorization", "")
        if h.startswith("Bearer ") and h[7:] in self.tokens:
            return None
        ns, model = request.match_info.get("ns", ""), request.match_info.get("model", "")
        realm = self.knobs.realm or f"http://{self.host}/token"
        challenge = (f'Bearer realm="{realm}",service="test-registry",'
                     f'scope="repository:{ns}/{model}:pull,push"')
        return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401,
                                 headers={"WWW-Authenticate": challenge})

    async def _token(self, request: web.Request) -> web.Response:
        """Verify Ollama's signed token request, then issue a token."""
        header = request.headers.get("Authorization", "")
        pub, _, sig = header.partition(":")
        url = f"{request.scheme}://{request.host}{request.raw_path}"
        payload = f"GET,{url},{base64.b64encode(hashlib.sha256(b'').hexdigest().encode()).decode()}"
        try:
            key = serialization.load_ssh_public_key(b"ssh-ed25519 " + pub.encode())
            assert isinstance(key, Ed25519PublicKey)
            key.verify(base64.b64decode(sig), payload.encode())
        except (ValueError, AssertionError, InvalidSignature, TypeError):
            return web.json_response({"error": "bad signature"}, status=401)
        for k in ("service", "scope", "ts", "nonce"):
            if k not in request.query:
                return web.json_response({"error": f"missing {k}"}, status=400)
        token = "tok-" + secrets.token_hex(8)
        with self._lock:
            self.tokens.add(token)
            self.public_keys.append(pub)
            self.stats.tokens_issued += 1
        return web.json_response({"token": token})

    async def _evil(self, request: web.Request) -> web.Response:
        return web.json_response({"token": "stolen"})

    # ---------- manifests ----------
    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _get_manifest(self, request: web.Request) -> web.Response:
        if (denied := self._authorized(request)) is not None:
            return denied
        if self.knobs.fail_manifest:
            return web.Response(status=self.knobs.fail_manifest, text="registry exploded")
        m = request.match_info
        data = self.manifests.get((f"{m['ns']}/{m['model']}", m["tag"]))
        if data is None:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
        return web.Response(body=data, content_type=MANIFEST_TYPE)

    async def _put_manifest(self, request: web.Request) -> web.Response:
        if (denied := self._authorized(request)) is not None:
            return denied
        m = request.match_info
        data = await request.read()
        manifest = json.loads(data)
        for layer in [*manifest.get("layers", []), manifest.get("config")]:
            if layer and layer["digest"] not in self.blobs:
                return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=400)
        self.manifests[(f"{m['ns']}/{m['model']}", m["tag"])] = data
        return web.Response(status=201)

    # ---------- blobs ----------
    async def _get_blob(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._authorized(request)) is not None:
            return denied
        digest = request.match_info["digest"]
        blob = self.blobs.get(digest)
        if blob is None or (request.method == "HEAD" and self.knobs.head_missing):
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
        if self.knobs.redirect_to and request.method == "GET":
            raise web.HTTPTemporaryRedirect(self.knobs.redirect_to.replace("{digest}", digest))
        if self.knobs.redirect and request.method == "GET":
            raise web.HTTPTemporaryRedirect(
                f"http://{self.cdn_host}/cdn/{digest}?sig={secrets.token_hex(4)}")
        return await self._serve(request, digest, blob)

    async def _cdn_blob(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        blob = self.blobs.get(digest)
        if blob is None:
            return web.Response(status=404)
        return await self._serve(request, digest, blob)

    async def _serve(self, request: web.Request, digest: str, blob: Blob) -> web.StreamResponse:
        k = self.knobs
        total = blob.size + k.extra_bytes
        start, stop = 0, total
        ranged = False
        rng = request.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if m is None or int(m.group(1)) >= total:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{total}"})
            start = int(m.group(1))
            stop = min(int(m.group(2)) + 1, total) if m.group(2) else total
            ranged = True
        headers = {"Content-Length": str(stop - start), "Content-Type": "application/octet-stream",
                   "Docker-Content-Digest": digest}
        if ranged:
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{total}"
        resp = web.StreamResponse(status=206 if ranged else 200, headers=headers)
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        with self._lock:
            self.stats.inflight += 1
            self.stats.max_inflight = max(self.stats.max_inflight, self.stats.inflight)
        try:
            await self._stream(request, resp, blob, start, stop, ranged)
        except ConnectionError:
            pass  # the client hung up (it only wanted part of this body)
        finally:
            with self._lock:
                self.stats.inflight -= 1
        return resp

    async def _stream(self, request: web.Request, resp: web.StreamResponse, blob: Blob,
                      start: int, stop: int, ranged: bool) -> None:
        k = self.knobs
        sent = 0
        pos = start
        while pos < stop:
            n = min(CHUNK, stop - pos)
            data = self._bytes(blob, pos, pos + n)
            if k.wrong_bytes and pos <= blob.size // 2 < pos + n:
                i = blob.size // 2 - pos
                data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
            with self._lock:
                drop = k.drop_after is not None and k.drops > 0 and sent + n > k.drop_after
                stall = k.stall_after is not None and k.stalls > 0 and sent + n > k.stall_after
                if drop:
                    k.drops -= 1
                if stall and not drop:
                    k.stalls -= 1
            if drop or stall:
                cut = (k.drop_after if drop else k.stall_after) - sent  # type: ignore[operator]
                if cut > 0:
                    await resp.write(data[:cut])
                    self._count(cut, ranged)
                if stall and not drop:
                    await asyncio.sleep(k.stall_seconds)
                assert request.transport is not None
                request.transport.close()  # flushes what was written (so it is all received)
                return
            await resp.write(data)
            self._count(n, ranged)
            sent += n
            pos += n
            if k.slow:
                await asyncio.sleep(k.slow)

    def _bytes(self, blob: Blob, start: int, stop: int) -> bytes:
        real = blob.read(start, min(stop, blob.size)) if start < blob.size else b""
        return real + b"\0" * (stop - start - len(real))  # extra_bytes: padding past the end

    def _count(self, n: int, ranged: bool) -> None:
        with self._lock:
            self.stats.bytes_served += n
            if ranged:
                self.stats.range_bytes += n

    # ---------- uploads ----------
    def _upload_location(self, request: web.Request, upload_id: str) -> str:
        m = request.match_info
        return f"/v2/{m['ns']}/{m['model']}/blobs/uploads/{upload_id}"

    async def _start_upload(self, request: web.Request) -> web.Response:
        if (denied := self._authorized(request)) is not None:
            return denied
        mount = request.query.get("mount")
        if mount and mount in self.blobs:
            return web.Response(status=201, headers={"Docker-Content-Digest": mount})
        upload_id = uuid.uuid4().hex
        self.uploads[upload_id] = bytearray()
        loc = self._upload_location(request, upload_id)
        return web.Response(status=202, headers={"Location": loc, "Docker-Upload-UUID": upload_id,
                                                 "Range": "0-0"})

    async def _patch_upload(self, request: web.Request) -> web.Response:
        if (denied := self._authorized(request)) is not None:
            return denied
        upload_id = request.match_info["id"]
        buf = self.uploads.get(upload_id)
        if buf is None:
            return web.Response(status=404)
        m = re.fullmatch(r"(\d+)-(\d+)", request.headers.get("Content-Range", ""))
        if m is None or int(m.group(1)) != len(buf):
            return web.Response(status=416, text="out of order chunk")
        loc = self._upload_location(request, upload_id)
        if self.knobs.upload_redirect and request.headers.get("X-Redirect-Uploads") == "1":
            await request.release()
            return web.Response(status=307, headers={
                "Location": f"http://{self.cdn_host}/cdn-upload/{upload_id}?offset={m.group(1)}",
                "Docker-Upload-Location": loc})
        data = await request.read()
        if len(data) != int(m.group(2)) - int(m.group(1)) + 1:
            return web.Response(status=400, text="chunk length does not match Content-Range")
        buf.extend(data)
        return web.Response(status=202, headers={"Location": loc, "Range": f"0-{len(buf) - 1}"})

    async def _cdn_upload(self, request: web.Request) -> web.Response:
        buf = self.uploads.get(request.match_info["id"])
        if buf is None or int(request.query.get("offset", "-1")) != len(buf):
            return web.Response(status=400)
        buf.extend(await request.read())
        return web.Response(status=201)

    async def _finish_upload(self, request: web.Request) -> web.Response:
        if (denied := self._authorized(request)) is not None:
            return denied
        buf = self.uploads.pop(request.match_info["id"], None)
        digest = request.query.get("digest", "")
        if buf is None:
            return web.Response(status=404)
        buf.extend(await request.read())
        if sha256_bytes(bytes(buf)) != digest:
            return web.json_response({"errors": [{"code": "DIGEST_INVALID"}]}, status=400)
        self.blobs[digest] = Blob(len(buf), data=bytes(buf))
        return web.Response(status=201, headers={"Docker-Content-Digest": digest})
