"""The on-disk model store, in Ollama's exact layout:

    <root>/manifests/<host>/<namespace>/<model>/<tag>   (docker v2 manifest JSON)
    <root>/blobs/sha256-<64 hex>                        (content-addressed layers)

Every write is a temp file in the target directory + fsync + rename, so a crash leaves either the
old or the new state. A digest reaches the filesystem only through `digest.validate_digest`, a name
only through `ModelName` validation, and every built path is checked to stay inside the root.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from ollamapy.errors import BadRequest, NotFound, OllamaError, StoreError
from ollamapy.gguf import GGUFError, GGUFFile, read_gguf
from ollamapy.inference import capabilities as caps_mod
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.logs import kv
from ollamapy.store.digest import (
    blob_filename,
    is_valid_digest,
    sha256_file,
    validate_digest,
)
from ollamapy.store.manifest import MAX_MANIFEST_BYTES, manifest_object
from ollamapy.store.model import Model
from ollamapy.store.names import ModelName

log = logging.getLogger("ollamapy.store")

RESOLVED_CACHE_SIZE = 64  # models whose resolve() result is kept (see ModelStore.resolve)
MEDIA_PREFIX = "application/vnd.ollama.image."
MEDIA_MODEL = MEDIA_PREFIX + "model"
MEDIA_ADAPTER = MEDIA_PREFIX + "adapter"
MEDIA_PROJECTOR = MEDIA_PREFIX + "projector"
MEDIA_TEMPLATE = MEDIA_PREFIX + "template"
MEDIA_PROMPT = MEDIA_PREFIX + "prompt"           # legacy name of the template layer
MEDIA_SYSTEM = MEDIA_PREFIX + "system"
MEDIA_PARAMS = MEDIA_PREFIX + "params"
MEDIA_MESSAGES = MEDIA_PREFIX + "messages"
MEDIA_LICENSE = MEDIA_PREFIX + "license"
# the layers read as text (one budget for all: `text_budget`, each at most MAX_TEXT_LAYER_BYTES)
TEXT_MEDIA = (MEDIA_TEMPLATE, MEDIA_PROMPT, MEDIA_SYSTEM, MEDIA_PARAMS, MEDIA_MESSAGES,
              MEDIA_LICENSE)
MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_CONFIG = "application/vnd.docker.container.image.v1+json"

MAX_TEXT_LAYER_BYTES = 16 << 20
PRUNE_GRACE_S = 3600.0
# A resumable pull (`sha256-<hex>-partial` + its `-partial-<N>` progress records) survives
# start-up pruning this long after its last progress, so a pull interrupted by a restart (or a
# weekend) resumes instead of starting over; Ollama deletes partials at every start.
PARTIAL_GRACE_S = 7 * 24 * 3600.0
_PARTIAL = re.compile(r"(sha256-[0-9a-fA-F]{64})-partial(?:-\d+(?:\.tmp)?)?")


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Temp file in the same directory, fsync, rename over `path`, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def manifest_json(data: JsonObject) -> bytes:
    """Compact JSON like Go's json.Marshal (key order as given)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class ManifestEntry:
    """One listed model: enough for /api/tags without reading any blob."""

    name: ModelName
    path: Path
    digest: str          # sha256 hex of the manifest bytes
    size: int            # layers + config
    modified_at: datetime
    manifest: JsonObject


@lru_cache(maxsize=32)
def _gguf_cached(path: str, size: int, mtime_ns: int) -> GGUFFile:
    return read_gguf(path)


def load_gguf(path: Path) -> GGUFFile:
    """GGUF facts of a blob, cached (blobs are content-addressed and immutable)."""
    st = path.stat()
    return _gguf_cached(str(path), st.st_size, st.st_mtime_ns)


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(os.path.expanduser(str(root))))
        self.blobs_dir = self.root / "blobs"
        self.manifests_dir = self.root / "manifests"
        # Serialises manifest mutations with the "which blobs are still referenced" decisions.
        # Held for long stretches (a create parses and copies under it), in worker threads only:
        # nothing on the event loop may take it.
        self.lock = threading.RLock()
        # Guards only the resolve cache's dict operations, never I/O, so resolve() (called on the
        # event loop for every inference request) cannot wait behind a create.
        self._cache_lock = threading.Lock()
        # name -> (manifest path, its identity, Model): see resolve().
        self._resolved: OrderedDict[str, tuple[Path, tuple[int, ...], Model]] = OrderedDict()

    # ---------- paths ----------
    def _inside(self, p: Path) -> Path:
        ap = Path(os.path.abspath(p))
        if ap != self.root and self.root not in ap.parents:
            raise BadRequest("invalid path")
        return ap

    def blob_path(self, digest: str) -> Path:
        return self._inside(self.blobs_dir / blob_filename(digest))

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def temp_dir(self) -> Path:
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        return self.blobs_dir

    def new_temp(self) -> tuple[int, Path]:
        """An open fd + path for an upload/download in progress (same filesystem as blobs)."""
        fd, name = tempfile.mkstemp(prefix="sha256-tmp-", dir=self.temp_dir())
        return fd, Path(name)

    def commit_blob(self, tmp: Path, digest: str) -> Path:
        """Verify tmp's sha256 against digest, then atomically rename it into place."""
        want = validate_digest(digest)
        try:
            got = sha256_file(tmp)
            if got != want:
                raise BadRequest(f'digest mismatch, expected "{want}", got "{got}"')
            dest = self.blob_path(want)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
            return dest
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def write_blob(self, data: bytes) -> tuple[str, bool]:
        """Store bytes as a blob -> (digest, created)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if path.is_file() and path.stat().st_size == len(data):
            return digest, False
        atomic_write(path, data)
        return digest, True

    def read_blob_text(self, digest: str, limit: int = MAX_TEXT_LAYER_BYTES) -> str:
        p = self.blob_path(digest)
        if not p.is_file():  # missing, or not a regular file (a FIFO would block the read)
            raise StoreError(f"layer {digest} is missing from the store")
        with p.open("rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise StoreError(f"layer {digest} is too large")
        return data.decode("utf-8", errors="replace")

    # ---------- manifests ----------
    def _manifest_path_exact(self, name: ModelName) -> Path:
        return self._inside(self.manifests_dir.joinpath(*name.filepath()))

    def find_manifest(self, name: ModelName) -> Path | None:
        """The stored manifest for name, matching each path part case-insensitively."""
        exact = self._manifest_path_exact(name)
        if _no_links(self.manifests_dir, exact) and exact.is_file():
            return exact
        d = self.manifests_dir
        for i, part in enumerate(name.filepath()):
            try:
                entries = os.listdir(d)
            except OSError:
                return None
            match = next((e for e in sorted(entries) if e.lower() == part.lower()
                          and not (d / e).is_symlink()), None)
            if match is None:
                return None
            d = d / match
            if i == 3:
                return self._inside(d) if d.is_file() else None
        return None

    def stored_name(self, name: ModelName) -> ModelName:
        """The name spelled as on disk (stored spelling wins), or name itself if absent."""
        p = self.find_manifest(name)
        if p is None:
            return name
        rel = p.relative_to(self.manifests_dir).parts
        return ModelName(rel[0], rel[1], rel[2], rel[3], name.scheme)

    def manifest_bytes(self, name: ModelName | str) -> bytes:
        n = _name(name)
        p = self.find_manifest(n)
        if p is None:
            raise NotFound(f"model '{_display(name)}' not found")
        with p.open("rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
        if len(data) > MAX_MANIFEST_BYTES:
            raise StoreError(f"manifest of {n.display_shortest()} is too large")
        return data

    def read_manifest(self, name: ModelName | str) -> JsonObject:
        return parse_manifest(self.manifest_bytes(name))

    def write_manifest(self, name: ModelName | str, data: bytes) -> Path:
        n = _name(name)
        parse_manifest(data)  # never store something we could not read back
        with self.lock:
            p = self.find_manifest(n) or self._manifest_path_exact(n)
            atomic_write(p, data)
            return p

    def delete(self, name: ModelName | str, *, prune_layers: bool = True) -> None:
        """Remove the manifest, empty parent dirs, then blobs no other manifest references."""
        n = _name(name)
        with self.lock:
            p = self.find_manifest(n)
            if p is None:
                raise NotFound(f"model '{_display(name)}' not found")
            try:
                old = self.layer_digests(parse_manifest(p.read_bytes()))
            except OllamaError:
                old = set()
            p.unlink()
            _fsync_dir(p.parent)
            self._remove_empty_dirs(p.parent)
            if prune_layers:
                self.remove_unreferenced(old)

    def _remove_empty_dirs(self, d: Path) -> None:
        while d != self.manifests_dir and self.manifests_dir in d.parents:
            try:
                d.rmdir()
            except OSError:
                return
            d = d.parent

    def iter_manifest_paths(self) -> list[Path]:
        """Exactly four levels below manifests/ (Ollama's glob); invalid names are skipped."""
        out: list[Path] = []
        base = self.manifests_dir
        if not base.is_dir():
            return out
        for host in _dirs(base):
            for ns in _dirs(host):
                for model in _dirs(ns):
                    for tag in sorted(model.iterdir()) if model.is_dir() else []:
                        if tag.is_file() and not tag.is_symlink() \
                                and not tag.name.startswith("."):
                            out.append(tag)
        return out

    def _entry(self, p: Path) -> ManifestEntry | None:
        rel = p.relative_to(self.manifests_dir).parts
        name = ModelName(*rel)
        if not name.is_valid():
            log.warning("skipping manifest with invalid name", extra=kv(path=p))
            return None
        try:
            data = p.read_bytes()[: MAX_MANIFEST_BYTES + 1]
            m = parse_manifest(data)
            st = p.stat()
        except (OSError, OllamaError) as e:
            log.warning("skipping bad manifest", extra=kv(path=p, error=e))
            return None
        size = sum(int(layer.get("size") or 0) for layer in m.get("layers", []))
        size += int((m.get("config") or {}).get("size") or 0)
        modified = datetime.fromtimestamp(st.st_mtime).astimezone()
        return ManifestEntry(name=name, path=p, digest=hashlib.sha256(data).hexdigest(),
                             size=size, modified_at=modified, manifest=m)

    def list_models(self) -> list[ManifestEntry]:
        """All readable manifests, newest first (what /api/tags lists)."""
        entries = [e for p in self.iter_manifest_paths() if (e := self._entry(p)) is not None]
        entries.sort(key=lambda e: e.modified_at, reverse=True)
        return entries

    def entry(self, name: ModelName | str) -> ManifestEntry:
        return self._located_entry(name)[1]

    def _located_entry(self, name: ModelName | str) -> tuple[Path, ManifestEntry]:
        p = self.find_manifest(_name(name))
        e = self._entry(p) if p is not None else None
        if p is None or e is None:
            raise NotFound(f"model '{_display(name)}' not found")
        return p, e

    # ---------- resolve ----------
    def cached(self, name: ModelName | str) -> Model | None:
        """The cached model for `name` while its manifest is unchanged (one stat), else None.
        Safe on the event loop; a miss is resolved off it (`inference.plan.prefetch`)."""
        return self._hit(str(name))

    def _hit(self, key: str, *, touch: bool = False) -> Model | None:
        """The cached model while its manifest is the same file (one stat), else None;
        `touch`: it becomes the most recently used entry."""
        with self._cache_lock:
            hit = self._resolved.get(key)
        if hit is None or _file_ident(hit[0]) != hit[1]:
            return None
        if touch:
            with self._cache_lock:
                if key in self._resolved:
                    self._resolved.move_to_end(key)
        return hit[2]

    def resolve(self, name: ModelName | str) -> Model:
        """Name -> Model with every layer read (text layers) or located (GGUF layers).

        Every inference request resolves its model, so the last result per name is reused
        while its manifest is the same file: manifests are replaced atomically (a new inode)
        and blobs are immutable. A hit costs one stat (~5 us instead of ~200 us)."""
        key = str(name)
        model = self._hit(key, touch=True)
        if model is not None:
            return model
        with self._cache_lock:
            self._resolved.pop(key, None)
        path, e = self._located_entry(name)
        ident = _file_ident(path)
        model = self.model_from_entry(e)
        if ident is not None and _file_ident(path) == ident:  # unchanged while it was read
            with self._cache_lock:
                self._resolved[key] = (path, ident, model)
                while len(self._resolved) > RESOLVED_CACHE_SIZE:
                    self._resolved.popitem(last=False)
        return model

    def model_from_entry(self, e: ManifestEntry) -> Model:
        m = e.manifest
        model_path: Path | None = None
        projectors: list[Path] = []
        adapters: list[Path] = []
        template = system = None
        licenses: list[str] = []
        params: JsonObject = {}
        messages: list[JsonObject] = []
        # one budget for all text layers: thousands of license layers naming one big blob
        # must not make every /api/tags read it thousands of times (issue 11)
        left = text_budget()

        def read_text(digest: str) -> str:
            nonlocal left
            if left <= 0:
                raise OllamaError(f"text layers of {e.name.display_shortest()} exceed "
                                  f"{text_budget()} bytes")
            text = self.read_blob_text(digest, min(left, MAX_TEXT_LAYER_BYTES))
            left -= len(text)
            return text

        for layer in m.get("layers", []):
            mt = layer.get("mediaType")
            digest = layer.get("digest")
            if not is_valid_digest(digest):
                raise StoreError(f"invalid digest in manifest of {e.name.display_shortest()}")
            if mt == MEDIA_MODEL:
                model_path = self.blob_path(digest)
            elif mt == MEDIA_PROJECTOR:
                projectors.append(self.blob_path(digest))
            elif mt == MEDIA_ADAPTER:
                adapters.append(self.blob_path(digest))
            elif mt in (MEDIA_TEMPLATE, MEDIA_PROMPT):
                template = read_text(digest)
            elif mt == MEDIA_SYSTEM:
                system = read_text(digest)
            elif mt == MEDIA_LICENSE:
                licenses.append(read_text(digest))
            elif mt == MEDIA_PARAMS:
                v = _json_or(read_text(digest), {})
                params = v if isinstance(v, dict) else {}
            elif mt == MEDIA_MESSAGES:
                v = _json_or(read_text(digest), [])
                messages = [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []
        config: JsonObject = {}
        cfg = m.get("config") or {}
        if is_valid_digest(cfg.get("digest")) and self.has_blob(cfg["digest"]):
            v = _json_or(self.read_blob_text(cfg["digest"]), {})
            config = v if isinstance(v, dict) else {}
        if model_path is None:
            raise StoreError(f"model '{e.name.display_shortest()}' has no model layer")
        gguf: GGUFFile | None = None
        try:
            gguf = load_gguf(model_path)
        except (OSError, GGUFError) as err:
            log.warning("cannot read model blob", extra=kv(path=model_path, error=err))
        facts = caps_mod.facts_from(gguf.kv if gguf is not None else None, template,
                                    caps_mod.projector_kvs(projectors), config)
        caps = caps_mod.capabilities(facts)
        return Model(
            name=str(e.name), short_name=e.name.display_shortest(), digest=e.digest,
            model_path=model_path, size=e.size, modified_at=e.modified_at,
            projector_paths=tuple(projectors), adapter_paths=tuple(adapters),
            template=template, system=system, license=tuple(licenses), params=params,
            messages=tuple(messages), config=config, capabilities=tuple(caps),
            prefer_jinja=template is not None and not caps_mod.uses_go_template(facts),
            reranker=gguf is not None and gguf.is_reranker,
        )

    # ---------- garbage ----------
    @staticmethod
    def layer_digests(m: JsonObject) -> set[str]:
        out = set()
        for layer in [*(m.get("layers") or []), m.get("config") or {}]:
            d = layer.get("digest") if isinstance(layer, dict) else None
            if is_valid_digest(d):
                out.add(validate_digest(d))
        return out

    def referenced(self) -> set[str] | None:
        """Digests used by any manifest; None if some manifest is unreadable (then never prune)."""
        refs: set[str] = set()
        for p in self.iter_manifest_paths():
            try:
                refs |= self.layer_digests(parse_manifest(p.read_bytes()))
            except (OSError, OllamaError) as e:
                log.warning("not pruning: unreadable manifest", extra=kv(path=p, error=e))
                return None
        return refs

    def remove_unreferenced(self, candidates: set[str]) -> list[str]:
        """Delete those of `candidates` that no manifest references any more."""
        with self.lock:
            refs = self.referenced()
            if refs is None:
                return []
            removed = []
            for d in sorted(candidates - refs):
                with contextlib.suppress(FileNotFoundError):
                    self.blob_path(d).unlink()
                    removed.append(d)
            return removed

    def prune(self, grace_s: float = PRUNE_GRACE_S,
              partial_grace_s: float = PARTIAL_GRACE_S) -> list[str]:
        """Start-up GC: unreferenced blobs and stray temp files older than `grace_s`, resumable
        partial downloads idle for longer than `partial_grace_s` (or whose blob is complete),
        empty manifest dirs."""
        removed: list[str] = []
        with self.lock:
            refs = self.referenced()
            if refs is None:
                return removed
            now = time.time()
            files: list[tuple[Path, os.stat_result]] = []
            if self.blobs_dir.is_dir():
                for f in self.blobs_dir.iterdir():
                    with contextlib.suppress(FileNotFoundError):
                        st = f.lstat()
                        if not f.is_symlink() and f.is_file():
                            files.append((f, st))
            partials: dict[str, list[tuple[Path, os.stat_result]]] = {}
            for f, st in files:
                m = _PARTIAL.fullmatch(f.name)
                if m is not None:
                    partials.setdefault(validate_digest(m.group(1)), []).append((f, st))
                    continue
                if now - st.st_mtime < grace_s:
                    continue
                if is_valid_digest(f.name) and validate_digest(f.name) in refs:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
                    removed.append(f.name)
            for digest, group in partials.items():
                idle = now - max(st.st_mtime for _, st in group)
                done = self.has_blob(digest)
                if idle < (grace_s if done else partial_grace_s) or _locked(group):
                    continue
                for f, _ in group:
                    with contextlib.suppress(FileNotFoundError):
                        f.unlink()
                        removed.append(f.name)
            if self.manifests_dir.is_dir():
                # Temp files of atomic manifest writes that a crash left behind.
                for f in self.manifests_dir.rglob(".tmp-*"):
                    with contextlib.suppress(FileNotFoundError):
                        st = f.lstat()
                        if f.is_file() and not f.is_symlink() and now - st.st_mtime >= grace_s:
                            f.unlink()
                            removed.append(f.name)
                for d in sorted(self.manifests_dir.rglob("*"), key=lambda x: -len(x.parts)):
                    if d.is_dir():
                        with contextlib.suppress(OSError):
                            d.rmdir()
        if removed:
            log.info("pruned unused blobs", extra=kv(count=len(removed)))
        return removed


def _file_ident(path: Path) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _locked(group: list[tuple[Path, os.stat_result]]) -> bool:
    """Is a download holding this partial's lock (another server sharing the store)?"""
    for f, _ in group:
        if not f.name.endswith("-partial"):
            continue
        try:
            fd = os.open(f, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            os.close(fd)  # closing drops a lock we took
    return False


def _no_links(base: Path, p: Path) -> bool:
    """No component of p below base is a symlink (a manifest path never leaves the store)."""
    cur = p
    while cur != base and base in cur.parents:
        if cur.is_symlink():
            return False
        cur = cur.parent
    return True


def _dirs(d: Path) -> list[Path]:
    try:
        return sorted(x for x in d.iterdir() if x.is_dir() and not x.is_symlink())
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTDIR):
            log.warning("cannot list directory", extra=kv(path=d, error=e))
        return []


def _name(name: ModelName | str) -> ModelName:
    return name if isinstance(name, ModelName) else ModelName.parse(name)


def _display(name: ModelName | str) -> str:
    return name if isinstance(name, str) else name.display_shortest()


def _json_or(text: str, default: Any) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return default


def text_budget() -> int:
    from ollamapy.config import read_setting

    return int(read_setting("OLLAMAPY_MAX_TEXT_LAYER_BYTES"))


def parse_manifest(data: bytes) -> JsonObject:
    """A stored manifest's JSON, checked by the one manifest parser (store/manifest.py); any
    defect is the store's (StoreError), whatever the parser called it."""
    try:
        return manifest_object(data)
    except OllamaError as e:
        raise StoreError(str(e)) from None
