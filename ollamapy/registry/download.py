"""Blob downloads: ranged parallel parts, persisted progress, shared between pulls.

Ollama's `server/download.go`, in asyncio. A blob is split into parts (size/16 clamped to
[100 MB, 1000 MB]); up to 16 parts download concurrently with `Range` GETs from the direct URL
(the registry's, or the first cross-origin redirect target: a CDN, which never sees our token),
each writing at its own offset into `<temp>/sha256-<hex>-partial`. Each part's progress is kept
in `...-partial-<N>` (JSON `{"N","Offset","Size","Completed"}`), written after every attempt and
at most once a second while bytes flow, so a dropped connection, a cancelled pull or a server
restart resumes where it stopped. A part that stalls restarts without using a retry; other
failures retry with exponential backoff; ENOSPC, cancellation and protocol violations abort.
The finished file is sha256-verified by the store's `commit_blob` before it is renamed into
place. All partial files live in the store's temp dir; nothing else is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ollamapy.errors import BadRequest, ClientClosed, InsufficientStorage, OllamaError
from ollamapy.logs import kv
from ollamapy.registry.names import resolve
from ollamapy.registry.transport import RegistryError, RegistrySession, error_text
from ollamapy.store.digest import validate_digest

log = logging.getLogger("ollamapy.registry")

MB = 1000 * 1000


@dataclass(frozen=True)
class DownloadConfig:
    parts: int = 16                 # concurrent parts (and the size divisor)
    min_part: int = 100 * MB
    max_part: int = 1000 * MB
    max_parts: int = 64             # beyond 64 GB parts grow instead (bounded partial files)
    max_retries: int = 6
    stall_timeout: float = 30.0     # no bytes for this long -> restart the part
    backoff: float = 1.0            # sleep backoff * 2**try between failed attempts
    resolve_timeout: float = 30.0   # finding the direct (CDN) URL, with retries
    chunk: int = 256 * 1024
    progress_interval: float = 0.06
    persist_interval: float = 1.0


@dataclass
class Part:
    n: int
    offset: int
    size: int
    completed: int = 0
    persisted_at: float = 0.0

    @property
    def start(self) -> int:
        return self.offset + self.completed

    @property
    def stop(self) -> int:
        return self.offset + self.size

    def to_json(self) -> bytes:
        return json.dumps({"N": self.n, "Offset": self.offset, "Size": self.size,
                           "Completed": self.completed}).encode() + b"\n"


def part_size(total: int, cfg: DownloadConfig) -> int:
    """Ollama's size/16 clamped to [min_part, max_part], but never more than `max_parts` parts
    (a manifest declaring 16 TiB would otherwise plan 16,384 part files)."""
    return max(min(max(total // cfg.parts, cfg.min_part), cfg.max_part),
               -(-total // max(cfg.max_parts, 1)))


def plan_parts(total: int, cfg: DownloadConfig) -> list[Part]:
    """Ollama's split: size/16 clamped to [min_part, max_part]; the last part takes the rest."""
    size = part_size(total, cfg)
    parts: list[Part] = []
    offset = 0
    while offset < total:
        n = min(size, total - offset)
        parts.append(Part(len(parts), offset, n))
        offset += n
    return parts


def restore_parts(records: list[bytes], total: int) -> list[Part] | None:
    """Saved part records -> parts, or None unless they tile [0, total) exactly with sane
    progress (anything else means start over, never trust a half-understood state)."""
    parts: list[Part] = []
    for raw in records:
        try:
            d = json.loads(raw)
            p = Part(int(d["N"]), int(d["Offset"]), int(d["Size"]), int(d["Completed"]))
        except (ValueError, KeyError, TypeError):
            return None
        if p.size <= 0 or not 0 <= p.completed <= p.size:
            return None
        parts.append(p)
    parts.sort(key=lambda p: p.n)
    offset = 0
    for i, p in enumerate(parts):
        if p.n != i or p.offset != offset:
            return None
        offset += p.size
    return parts if offset == total and parts else None


class Fatal(OllamaError):
    """Do not retry: the server broke the protocol or the disk is full."""


class Stalled(Exception):
    pass


class Retryable(Exception):
    pass


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def check_range_response(status: int, headers: Any, start: int, stop: int, total: int) -> None:
    """A ranged GET's answer must be exactly the bytes asked for, of a blob of the declared
    size; anything else is a protocol violation (Fatal), never data to write."""
    if status == 206:
        m = _CONTENT_RANGE.fullmatch(headers.get("Content-Range", "").strip())
        if m is None or int(m.group(1)) != start:
            raise Fatal("unexpected Content-Range from the registry")
        if m.group(3) != "*" and int(m.group(3)) != total:
            raise Fatal(f"blob size mismatch: the registry's blob is not the {total} bytes "
                        "the manifest declares")
        return
    if status == 200:
        length = headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) != total:
            raise Fatal(f"blob size mismatch: the registry's blob is not the {total} bytes "
                        "the manifest declares")
        if start != 0:
            raise Fatal("registry ignored the Range header")
        return
    raise Fatal(f"unexpected status {status}")


ProgressFn = Callable[[int, int], None]  # (completed, total)


@dataclass
class BlobDownload:
    digest: str
    total: int
    completed: int = 0
    task: asyncio.Task[None] | None = None
    refs: int = 0
    bytes_received: int = 0
    parts: list[Part] = field(default_factory=list)


class Downloader:
    """All blob downloads of one server; a second pull of a digest attaches to the first."""

    def __init__(self, store: Any, http: aiohttp.ClientSession | None,
                 cfg: DownloadConfig | None = None) -> None:
        self._store = store  # a ModelStore, or a callable returning one
        self.http = http
        self.cfg = cfg or DownloadConfig()
        self.active: dict[str, BlobDownload] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def store(self) -> Any:
        return self._store() if callable(self._store) else self._store

    # -- public -------------------------------------------------------------------------------

    async def fetch(self, session: RegistrySession, digest: str, size: int,
                    progress: ProgressFn) -> bool:
        """Make the blob present in the store. True if it already was (nothing downloaded)."""
        digest = validate_digest(digest)
        if self.store.has_blob(digest):
            have = self.store.blob_path(digest).stat().st_size
            progress(have, have)
            return True
        bd = self.active.get(digest)
        if bd is None or bd.task is None or bd.task.done():
            bd = BlobDownload(digest, size)
            self.active[digest] = bd
            bd.task = asyncio.get_running_loop().create_task(self._run(bd, session))
            bd.task.add_done_callback(functools.partial(self._finished, digest, bd))
        elif bd.total != size:
            raise OllamaError(f"blob {digest} is being downloaded with a different size "
                              f"({bd.total}, manifest says {size})")
        await self._wait(bd, progress)
        return False

    async def aclose(self) -> None:
        """Server shutdown: stop every download, keeping its progress for the next start."""
        tasks = [bd.task for bd in self.active.values() if bd.task and not bd.task.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- waiting ------------------------------------------------------------------------------

    def _finished(self, digest: str, bd: BlobDownload, task: asyncio.Task[None]) -> None:
        if self.active.get(digest) is bd:
            del self.active[digest]
        if not task.cancelled():
            task.exception()  # mark retrieved; waiters re-raise it

    async def _wait(self, bd: BlobDownload, progress: ProgressFn) -> None:
        assert bd.task is not None
        bd.refs += 1
        try:
            progress(bd.completed, bd.total)
            while not bd.task.done():
                await asyncio.wait({bd.task}, timeout=self.cfg.progress_interval)
                progress(bd.completed, bd.total)
            if bd.task.cancelled():
                raise ClientClosed()
            exc = bd.task.exception()
            if exc is not None:
                raise exc
        finally:
            bd.refs -= 1
            if bd.refs == 0 and not bd.task.done():
                # Nobody wants it any more (every pull was cancelled): stop, keep progress.
                if self.active.get(bd.digest) is bd:
                    del self.active[bd.digest]
                bd.task.cancel()

    # -- the download itself ------------------------------------------------------------------

    def _paths(self, digest: str) -> tuple[Path, Path]:
        tmp = Path(self.store.temp_dir())
        name = validate_digest(digest).replace(":", "-", 1) + "-partial"
        return tmp, tmp / name

    async def _run(self, bd: BlobDownload, session: RegistrySession) -> None:
        lock = self._locks.setdefault(bd.digest, asyncio.Lock())
        async with lock:  # a cancelled predecessor finishes saving its progress first
            if self.store.has_blob(bd.digest):
                bd.completed = bd.total
                return
            await self._download(bd, session)

    async def _download(self, bd: BlobDownload, session: RegistrySession) -> None:
        tmp_dir, data_path = self._paths(bd.digest)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        check_disk_space(tmp_dir, data_path, bd.total)  # before any file exists
        fd = os.open(data_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                try:  # another server sharing this store may be downloading the same blob
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise OllamaError(f"{bd.digest} is being downloaded by another "
                                      "process") from None
                parts = self._load_parts(data_path, bd.total)
                if parts is not None and os.fstat(fd).st_size != bd.total:
                    parts = None  # records without their data file: trust neither
                if parts is None:  # nothing (usable) saved: start from scratch
                    self._discard(data_path, keep_data=True)
                    os.ftruncate(fd, 0)
                    parts = plan_parts(bd.total, self.cfg)
                    for p in parts:
                        self._persist(data_path, p)
                bd.parts = parts
                bd.completed = sum(p.completed for p in parts)
                if parts:
                    log.info("downloading", extra=kv(
                        digest=bd.digest[7:19], parts=len(parts), part_size=parts[0].size,
                        resume_at=bd.completed))
                if os.fstat(fd).st_size != bd.total:
                    os.ftruncate(fd, bd.total)
                todo = [p for p in parts if p.completed < p.size]
                if todo:
                    url = await self._direct_url(session, session.target.blob_url(bd.digest))
                    slots = asyncio.Semaphore(self.cfg.parts)  # at most 16 parts in flight
                    async with asyncio.TaskGroup() as tg:
                        for p in todo:
                            tg.create_task(self._part(bd, session, url, fd, data_path, p,
                                                      slots))
            except BaseExceptionGroup as eg:
                raise _pick(eg) from None
        except Fatal:
            self._discard(data_path)  # the server broke the protocol: keep none of its bytes
            raise
        except OSError as e:
            raise _os_error(e) from None
        finally:
            os.close(fd)
        self._discard(data_path, keep_data=True)
        try:
            await asyncio.shield(asyncio.to_thread(self.store.commit_blob, data_path,
                                                   bd.digest))
        except BadRequest as e:
            data_path.unlink(missing_ok=True)
            raise OllamaError(mismatch_message(e.message, bd.digest)) from None

    def _load_parts(self, data_path: Path, total: int) -> list[Part] | None:
        records = []
        for f in sorted(data_path.parent.glob(data_path.name + "-*")):
            if not f.name[len(data_path.name) + 1:].isdigit():
                continue
            try:
                records.append(f.read_bytes())
            except OSError:
                return None
        if not records:
            return None
        return restore_parts(records, total)

    def _discard(self, data_path: Path, keep_data: bool = False) -> None:
        for f in data_path.parent.glob(data_path.name + "-*"):
            suffix = f.name[len(data_path.name) + 1:]
            if suffix.isdigit() or suffix.endswith(".tmp"):
                f.unlink(missing_ok=True)
        if not keep_data:
            data_path.unlink(missing_ok=True)

    def _persist(self, data_path: Path, part: Part) -> None:
        """Atomically record how much of the part is on disk (never more than is written)."""
        final = Path(f"{data_path}-{part.n}")
        tmp = final.with_name(final.name + ".tmp")
        tmp.write_bytes(part.to_json())
        os.replace(tmp, final)
        part.persisted_at = time.monotonic()

    async def _direct_url(self, session: RegistrySession, url: str) -> str:
        """GET the registry's blob URL without following a redirect to another origin: 200/206
        means download from the registry itself, a redirect names the CDN URL (no auth there)."""
        cfg = self.cfg
        deadline = time.monotonic() + cfg.resolve_timeout
        attempt = 0
        while True:
            try:
                # A one-byte range: a registry that serves the blob itself answers with one byte
                # (not the start of a multi-GB body we would throw away).
                resp = await session.request("GET", url, follow="same",
                                             headers={"Range": "bytes=0-0"})
                try:
                    if resp.status in (301, 302, 303, 307, 308):
                        return resolve(str(resp.url), resp.headers["Location"])
                    if resp.status in (200, 206):
                        return url
                    raise Fatal(f"unexpected status code {resp.status}")
                finally:
                    resp.close()  # do not drain a 200 body: the parts fetch it by range
            except (aiohttp.ClientError, TimeoutError) as e:
                attempt += 1
                delay = min(cfg.backoff * 0.01 * attempt * attempt, 10.0)
                if time.monotonic() + delay > deadline:
                    raise OllamaError(f"failed to get direct URL: {e or type(e).__name__}") \
                        from None
                log.warning("failed to get direct URL; backing off and retrying", extra=kv(error=e))
                await asyncio.sleep(delay)

    async def _part(self, bd: BlobDownload, session: RegistrySession, url: str, fd: int,
                    data_path: Path, part: Part, slots: asyncio.Semaphore) -> None:
        async with slots:
            await self._part_attempts(bd, session, url, fd, data_path, part)

    async def _part_attempts(self, bd: BlobDownload, session: RegistrySession, url: str,
                             fd: int, data_path: Path, part: Part) -> None:
        cfg = self.cfg
        tries = 0
        while part.completed < part.size:
            before = part.completed
            try:
                await self._chunk(bd, session, url, fd, data_path, part)
            except Stalled:
                log.info("part stalled; retrying", extra=kv(digest=bd.digest[7:19], part=part.n))
                continue
            except Retryable as e:
                if part.completed > before:
                    tries = 0  # progress was made: the connection is flaky, not dead
                tries += 1
                if tries >= cfg.max_retries:
                    raise OllamaError(f"max retries exceeded: {e}") from None
                sleep = cfg.backoff * 2 ** (tries - 1)
                log.info("part failed, retrying", extra=kv(
                    digest=bd.digest[7:19], part=part.n, attempt=tries, error=e,
                    retry_in=f"{sleep:.1f}s"))
                await asyncio.sleep(sleep)
            finally:
                with contextlib.suppress(OSError):
                    self._persist(data_path, part)

    async def _chunk(self, bd: BlobDownload, session: RegistrySession, url: str, fd: int,
                     data_path: Path, part: Part) -> None:
        cfg = self.cfg
        start, stop = part.start, part.stop
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=cfg.stall_timeout,
                                        sock_read=cfg.stall_timeout)
        try:
            resp = await session.send("GET", url, headers={"Range": f"bytes={start}-{stop - 1}"},
                                      client_timeout=timeout)
        except (aiohttp.ServerTimeoutError, TimeoutError) as e:
            raise Stalled() from e
        except aiohttp.ClientError as e:
            raise Retryable(str(e) or type(e).__name__) from e
        try:
            if resp.status >= 400:
                text = await error_text(resp)
                if resp.status >= 500 or resp.status in (408, 429):
                    raise Retryable(text)
                raise OllamaError(text)  # e.g. an expired CDN URL: stop, keep the progress
            check_range_response(resp.status, resp.headers, start, stop, bd.total)
            pos = start
            try:
                while pos < stop:
                    data = await resp.content.read(min(cfg.chunk, stop - pos))
                    if not data:
                        raise Retryable("unexpected EOF")
                    try:
                        os.pwrite(fd, data, pos)
                    except OSError as e:
                        if e.errno == errno.ENOSPC:
                            raise Fatal("no space left on device") from None
                        raise
                    pos += len(data)
                    part.completed += len(data)
                    bd.completed += len(data)
                    bd.bytes_received += len(data)
                    if time.monotonic() - part.persisted_at >= cfg.persist_interval:
                        self._persist(data_path, part)
            except (aiohttp.ServerTimeoutError, TimeoutError) as e:
                raise Stalled() from e
            except aiohttp.ClientError as e:
                raise Retryable(str(e) or type(e).__name__) from e
        finally:
            resp.close()  # never read past the part: extra bytes are simply not accepted


def check_disk_space(tmp_dir: Path, data_path: Path, total: int) -> None:
    """Refuse a blob that cannot fit before writing anything: a manifest may declare 16 TiB, and
    an aborted pull of it must not leave a sparse file and part records behind."""
    try:
        st = os.statvfs(tmp_dir)
    except OSError:
        return
    have = st.f_bavail * st.f_frsize
    try:
        have += os.stat(data_path).st_blocks * 512  # resuming: what is already on disk counts
    except OSError:
        pass
    if total > have:
        raise InsufficientStorage(f"not enough free disk space for a {total}-byte blob "
                                f"({have} bytes available)")


def mismatch_message(store_message: str, want: str) -> str:
    """Ollama's wording, minus the received digest: a hash of what a redirect target sent is an
    oracle on internal content (issue 11), so it is logged, never returned."""
    got = re.search(r"got \"?(sha256:[0-9a-f]{64})", store_message)
    if got:
        log.warning("digest mismatch", extra=kv(want=want, got=got.group(1)))
    return f"digest mismatch, file must be downloaded again: want {want}, got a different digest"


def _pick(eg: BaseExceptionGroup) -> BaseException:
    """The one error to report from a failed group of parts: a protocol violation first."""
    leaves: list[BaseException] = []

    def walk(g: BaseExceptionGroup) -> None:
        for e in g.exceptions:
            walk(e) if isinstance(e, BaseExceptionGroup) else leaves.append(e)

    walk(eg)
    for kind in (Fatal, OllamaError, OSError):
        for e in leaves:
            if isinstance(e, kind):
                return e
    return leaves[0]


def _os_error(e: BaseException) -> OllamaError:
    if isinstance(e, OSError):
        return OllamaError(f"{e.strerror or e}: {e.filename}" if e.filename else str(e))
    return OllamaError(str(e))


__all__ = ["BlobDownload", "DownloadConfig", "Downloader", "Part", "RegistryError",
           "check_range_response", "plan_parts", "restore_parts"]
