"""Pull and push, orchestrated with Ollama's exact progress sequence (`server/images.go`).

pull: `pulling manifest` -> per blob `pulling <12hex>` {digest,total,completed} ->
`verifying sha256 digest` -> `writing manifest` -> [`removing unused layers`] -> `success`.
push: `retrieving manifest` -> per blob `pushing <12hex>` -> `pushing manifest` -> `success`.

One `RegistryService` lives in the server (created at start-up): it owns the HTTP client session
and the shared `Downloader`, so two pulls of one blob share one download.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from ollamapy.errors import BadRequest, NotFound, OllamaError
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.registry import auth, netguard
from ollamapy.registry.download import DownloadConfig, Downloader
from ollamapy.registry.names import MANIFEST_MEDIA_TYPE, target
from ollamapy.registry.transport import (
    RegistryError,
    RegistryNotFound,
    RegistrySession,
    read_capped,
)
from ollamapy.registry.upload import upload_blob
from ollamapy.store.manifest import MAX_MANIFEST_BYTES, parse_manifest
from ollamapy.store.names import ModelName

Emit = Callable[[JsonObject], None]


def progress_message(verb: str, digest: str, total: int, completed: int) -> JsonObject:
    return {"status": f"{verb} {digest[7:19]}", "digest": digest, "total": total,
            "completed": completed}


class RegistryService:
    """`store` is a ModelStore or a zero-argument callable returning one (resolved per use, so
    the service can be built before the app's store exists). The HTTP session is created on
    first use, inside the running loop."""

    def __init__(self, store: Any, *, key_path: Path | None = None, noprune: bool = False,
                 cfg: DownloadConfig | None = None) -> None:
        self._store = store
        self.key_path = key_path or auth.default_key_path()
        self.noprune = noprune
        self.cfg = cfg or DownloadConfig()
        self._http: aiohttp.ClientSession | None = None
        self._http_internal: aiohttp.ClientSession | None = None
        self.downloader = Downloader(lambda: self.store, None, self.cfg)
        self._push_locks: dict[str, asyncio.Lock] = {}

    @property
    def store(self) -> Any:
        return self._store() if callable(self._store) else self._store

    @staticmethod
    def _client(allow_internal: bool) -> aiohttp.ClientSession:
        """Two pools: one whose resolver admits only public answers, one (for registries on
        internal addresses) that refuses link-local only; a pooled connection never crosses."""
        resolver = netguard.GuardedResolver(allow_internal, exempt=netguard.proxy_hosts())
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=60, resolver=resolver),
            auto_decompress=False, trust_env=False)

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = self._client(False)
            self.downloader.http = self._http
        return self._http

    @property
    def http_internal(self) -> aiohttp.ClientSession:
        if self._http_internal is None or self._http_internal.closed:
            self._http_internal = self._client(True)
        return self._http_internal

    async def aclose(self) -> None:
        await self.downloader.aclose()
        for http in (self._http, self._http_internal):
            if http is not None:
                await http.close()

    def _sign(self, data: bytes) -> str:
        return auth.sign(auth.load_key(self.key_path), data)

    def session(self, name: ModelName, insecure: bool) -> RegistrySession:
        return RegistrySession(self.http, target(name, insecure), self._sign, insecure,
                               http_internal=self.http_internal)

    # -- pull ---------------------------------------------------------------------------------

    async def pull(self, name: ModelName, insecure: bool, emit: Emit) -> None:
        store = self.store
        name = store.stored_name(name)  # pulling over `Llama3` updates the stored `llama3`
        old: set[str] = set()
        with contextlib.suppress(NotFound, OllamaError, OSError):
            old = store.layer_digests(store.read_manifest(name))
        session = self.session(name, insecure)

        emit({"status": "pulling manifest"})
        try:
            data = await self._fetch_manifest(session)
            manifest = parse_manifest(data)
        except RegistryNotFound:
            raise OllamaError("pull model manifest: file does not exist") from None
        except BadRequest:
            raise  # "invalid digest format": a manifest digest that must never become a path
        except (aiohttp.ClientError, TimeoutError) as e:
            raise OllamaError(f"pull model manifest: {_net_error(e)}") from None
        except OllamaError as e:
            raise e.prefixed("pull model manifest: ") from None

        blobs = manifest.blobs()
        for layer in blobs:
            def progress(done: int, total: int, d: str = layer.digest) -> None:
                emit(progress_message("pulling", d, total, done))

            try:
                await self.downloader.fetch(session, layer.digest, layer.size, progress)
            except (aiohttp.ClientError, TimeoutError) as e:
                raise OllamaError(_net_error(e)) from None

        # Every downloaded blob was sha256-verified by the store before it was moved into place.
        emit({"status": "verifying sha256 digest"})
        emit({"status": "writing manifest"})
        await asyncio.to_thread(self._write_manifest, name, data, [b.digest for b in blobs])

        unused = old - {layer.digest for layer in blobs}
        if unused and not self.noprune:
            emit({"status": "removing unused layers"})
            try:
                await asyncio.to_thread(store.remove_unreferenced, unused)
            except OSError as e:
                emit({"status": f"couldn't remove unused layers: {e}"})
        emit({"status": "success"})

    def _write_manifest(self, name: ModelName, data: bytes, digests: list[str]) -> None:
        """Under the store's lock, so a concurrent delete cannot remove a blob between the
        check that all blobs are present and the manifest that references them."""
        store = self.store
        lock = getattr(store, "lock", None) or contextlib.nullcontext()
        with lock:
            for d in digests:
                if not store.has_blob(d):
                    raise OllamaError(f"blob {d} disappeared before the manifest was written")
            store.write_manifest(name, data)

    async def _fetch_manifest(self, session: RegistrySession) -> bytes:
        resp = await session.request("GET", session.target.manifest_url,
                                     headers={"Accept": MANIFEST_MEDIA_TYPE})
        try:
            return await read_capped(resp, MAX_MANIFEST_BYTES)
        finally:
            resp.release()

    # -- push ---------------------------------------------------------------------------------

    async def push(self, name: ModelName, insecure: bool, emit: Emit) -> None:
        store = self.store
        emit({"status": "retrieving manifest"})
        session = self.session(name, insecure)
        try:
            data = store.manifest_bytes(name)
        except NotFound:
            emit({"status": "couldn't retrieve manifest"})
            raise
        manifest = parse_manifest(data)
        for layer in manifest.blobs():
            if not store.has_blob(layer.digest):
                raise OllamaError(f"blob {layer.digest} of {name.display_shortest()} is missing")
            path = store.blob_path(layer.digest)
            size = path.stat().st_size
            if size != layer.size:
                raise OllamaError(f"blob {layer.digest} has {size} bytes, manifest says "
                                  f"{layer.size}")

            def progress(done: int, total: int, d: str = layer.digest) -> None:
                emit(progress_message("pushing", d, total, done))

            lock = self._push_locks.setdefault(layer.digest, asyncio.Lock())
            try:
                async with lock:  # one upload of a blob at a time; the next one HEADs it
                    await upload_blob(session, path, layer, progress, self.cfg)
            except (aiohttp.ClientError, TimeoutError) as e:
                raise OllamaError(_net_error(e)) from None

        emit({"status": "pushing manifest"})
        try:
            resp = await session.request(
                "PUT", session.target.manifest_url, headers={"Content-Type": MANIFEST_MEDIA_TYPE},
                body=lambda: data)
            resp.release()
        except RegistryError as e:
            raise OllamaError(e.message) from None
        except (aiohttp.ClientError, TimeoutError) as e:
            raise OllamaError(_net_error(e)) from None
        emit({"status": "success"})


def _net_error(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out talking to the registry"
    return str(e) or type(e).__name__
