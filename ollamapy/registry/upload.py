"""Push one blob: Ollama's `server/upload.go` flow against a docker-v2 style registry.

HEAD the blob (exists -> done). Otherwise POST `/blobs/uploads/` (with `?mount=&from=` when the
layer records where it came from; 201 = mounted, done), then send the parts in order with
`PATCH` + `Content-Range: <start>-<end>` + `X-Redirect-Uploads: 1`; a 307 answer means "PUT
this part to the Location instead" (no credentials: it is another host), and the next upload
URL comes from `Docker-Upload-Location`/`Location`. Finish with
`PUT <url>?digest=<digest>&etag=<md5 of part md5s>-<parts>`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp

from ollamapy.errors import OllamaError
from ollamapy.logs import kv
from ollamapy.registry import auth
from ollamapy.registry.download import DownloadConfig, plan_parts
from ollamapy.registry.names import resolve
from ollamapy.registry.transport import (
    RegistryError,
    RegistryNotFound,
    RegistrySession,
    error_text,
)
from ollamapy.store.manifest import Layer
from ollamapy.store.names import ModelName

log = logging.getLogger("ollamapy.registry")

ProgressFn = Callable[[int, int], None]


def add_query(url: str, params: list[tuple[str, str]]) -> str:
    parts = urllib.parse.urlsplit(url)
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + params
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(pairs)))


def next_location(request_url: str, headers: object) -> str | None:
    h = headers  # CIMultiDictProxy
    loc = h.get("Docker-Upload-Location") or h.get("Location")  # type: ignore[attr-defined]
    return resolve(request_url, loc) if loc else None


class _Counter:
    """Bytes of this blob sent so far (rolled back when an attempt fails)."""

    def __init__(self, total: int, progress: ProgressFn) -> None:
        self.total = total
        self.done = 0
        self.progress = progress


async def _section(path: Path, offset: int, size: int, counter: _Counter,
                   md5: hashlib._Hash, chunk: int = 1 << 20) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        f.seek(offset)
        left = size
        while left > 0:
            data = f.read(min(chunk, left))
            if not data:
                raise OllamaError(f"{path.name}: file shrank while uploading")
            left -= len(data)
            md5.update(data)
            counter.done += len(data)
            counter.progress(counter.done, counter.total)
            yield data
            await asyncio.sleep(0)


async def upload_blob(session: RegistrySession, path: Path, layer: Layer, progress: ProgressFn,
                      cfg: DownloadConfig | None = None) -> None:
    cfg = cfg or DownloadConfig()
    target = session.target
    digest, size = layer.digest, layer.size
    try:
        resp = await session.request("HEAD", target.blob_url(digest))
        resp.release()
        progress(size, size)
        return
    except RegistryNotFound:
        pass

    start = target.upload_url
    if layer.from_:
        src = ModelName.try_parse(layer.from_)
        if src is not None:
            start = add_query(start, [("mount", digest),
                                      ("from", f"{src.namespace}/{src.model}")])
    resp = await session.request("POST", start, follow="none")
    try:
        if resp.status == 201:  # cross-repository mount: the registry already has it
            progress(size, size)
            return
        url = next_location(str(resp.url), resp.headers)
    finally:
        resp.release()
    if url is None:
        raise OllamaError("registry did not return an upload location")

    counter = _Counter(size, progress)
    progress(0, size)
    sums: list[bytes] = []
    for part in plan_parts(size, cfg):
        tries = 0
        while True:
            before = counter.done
            try:
                url, part_md5 = await _send_part(session, url, path, part.offset, part.size,
                                                 counter)
                sums.append(part_md5)
                break
            except (aiohttp.ClientError, TimeoutError, RegistryError) as e:
                counter.done = before
                if isinstance(e, RegistryError) and e.status_code < 500 \
                        and e.status_code not in (408, 429):
                    raise
                tries += 1
                if tries >= cfg.max_retries:
                    raise OllamaError(f"max retries exceeded: {e}") from None
                delay = cfg.backoff * 2 ** (tries - 1)
                log.info("part failed, retrying", extra=kv(
                    digest=digest[7:19], part=part.n, attempt=tries, error=e,
                    retry_in=f"{delay:.1f}s"))
                await asyncio.sleep(delay)

    etag = hashlib.md5(b"".join(sums), usedforsecurity=False).hexdigest()
    finish = add_query(url, [("digest", digest), ("etag", f"{etag}-{len(sums)}")])
    resp = await session.request("PUT", finish, follow="none",
                                 headers={"Content-Type": "application/octet-stream",
                                          "Content-Length": "0"})
    resp.release()
    progress(size, size)


async def _send_part(session: RegistrySession, url: str, path: Path, offset: int, size: int,
                     counter: _Counter) -> tuple[str, bytes]:
    """PATCH one part (PUT it to the redirect target on 307) -> (next upload URL, part md5)."""
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size),
               "X-Redirect-Uploads": "1",
               "Content-Range": f"{offset}-{offset + size - 1}"}
    for _ in range(2):
        before = counter.done
        md5 = hashlib.md5(usedforsecurity=False)
        resp = await session.send(
            "PATCH", url, headers=headers, follow="none",
            body=lambda m=md5: _section(path, offset, size, counter, m))  # type: ignore[misc]
        if resp.status == 401:
            counter.done = before
            challenge = auth.parse_challenge(resp.headers.get("WWW-Authenticate"))
            resp.release()
            if challenge is None:
                raise RegistryError("unauthorized: access denied", 401)
            session.token = await session.fetch_token(challenge)
            continue
        if resp.status == 307:
            counter.done = before
            redirect = resolve(url, resp.headers.get("Location", ""))
            nxt = resp.headers.get("Docker-Upload-Location")
            resp.release()
            md5 = hashlib.md5(usedforsecurity=False)
            put = await session.send(
                "PUT", redirect, follow="none",
                headers={"Content-Type": "application/octet-stream",
                         "Content-Length": str(size)},
                body=lambda m=md5: _section(path, offset, size, counter, m))  # type: ignore[misc]
            if put.status >= 400:
                raise RegistryError(await error_text(put), put.status)
            put.release()
            return (resolve(url, nxt) if nxt else url), md5.digest()
        if resp.status >= 400:
            raise RegistryError(await error_text(resp), resp.status)
        nxt_url = next_location(url, resp.headers)
        resp.release()
        return nxt_url or url, md5.digest()
    raise RegistryError("unauthorized: access denied", 401)
