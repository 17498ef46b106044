"""Model management routes: blobs, create, tags, show, copy, delete and OpenAI's /v1/models.

Handlers only parse, validate and shape responses; filesystem work happens in `ollamapy.store`
on worker threads so the event loop never blocks on disk I/O or hashing.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from ollamapy.api.decode import decode_request
from ollamapy.api.models import (
    CopyRequest,
    CreateRequest,
    DeleteRequest,
    ListModel,
    ListResponse,
    Message,
    ModelDetails,
    OpenAIModel,
    OpenAIModelList,
    ShowRequest,
    ShowResponse,
    Tensor,
)
from ollamapy.errors import BadRequest, InsufficientStorage, InternalError, NotFound, OllamaError
from ollamapy.gguf import GGUFError, model_info
from ollamapy.gofmt import format_time
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.jsoncodec import dumps
from ollamapy.logs import kv
from ollamapy.modelfile import parameter_lines, render_model
from ollamapy.server import keys
from ollamapy.server.wire import ndjson
from ollamapy.store import quantize
from ollamapy.store import store as st
from ollamapy.store.create import CreateSpec, create_model, model_blob
from ollamapy.store.digest import validate_digest
from ollamapy.store.model import Model
from ollamapy.store.names import ModelName

MAX_SHOW_TENSORS = 1 << 16  # /api/show lists at most this many tensors
log = logging.getLogger("ollamapy.server.models")

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")
CHUNK = 1 << 20


# ---------- helpers ----------
async def read_body(request: web.Request, cls: type[T]) -> T:
    """Decode a JSON body into `cls` with Ollama's error texts (400 on anything malformed)."""
    return await decode_request(cls, request)


@dataclass(frozen=True)
class ModelRoutes:
    """What these handlers use, handed in by the app factory. The concrete store: create,
    copy and prune work on its files and its mutation lock."""

    store: st.ModelStore
    noprune: bool


Handler = Callable[[web.Request, ModelRoutes], Awaitable[web.StreamResponse]]


def bind(handler: Handler, ctx: ModelRoutes) -> Callable[[web.Request],
                                                          Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await handler(request, ctx)
    handle.__name__ = handler.__name__
    return handle


def json_ok(model: BaseModel | JsonObject, status: int = 200) -> web.Response:
    body = model if isinstance(model, dict) else model.model_dump(exclude_none=True)
    return web.Response(status=status, body=dumps(body),
                        content_type="application/json", charset="utf-8")


async def in_thread(fn: Callable[..., R], *args: Any) -> R:
    return await asyncio.to_thread(fn, *args)


def details_of(config: JsonObject, parent_model: str = "") -> ModelDetails:
    """api.ModelDetails from a model's config blob: what /api/tags, /api/ps and /api/show all
    report (only show names a parent model, as Ollama does)."""
    fams = config.get("model_families")
    return ModelDetails(parent_model=parent_model, format=config.get("model_format") or "",
                        family=config.get("model_family") or "",
                        families=fams if isinstance(fams, list) else None,
                        parameter_size=config.get("model_type") or "",
                        quantization_level=config.get("file_type") or "")


def parent_of(manifest: JsonObject) -> str:
    """The model a model was created FROM (its model layer's `from`), or ""."""
    for layer in manifest.get("layers", []):
        if layer.get("mediaType") == st.MEDIA_MODEL:
            return layer.get("from") or ""
    return ""


def _config_of(store: st.ModelStore, m: JsonObject) -> JsonObject:
    cfg = m.get("config") or {}
    d = cfg.get("digest")
    if not d or not store.has_blob(d):
        return {}
    try:
        v = json.loads(store.read_blob_text(d, 1 << 20))
    except (ValueError, OSError, OllamaError):
        return {}
    return v if isinstance(v, dict) else {}


# ---------- blobs ----------
async def head_blob(request: web.Request, ctx: ModelRoutes) -> web.Response:
    digest = validate_digest(request.match_info["digest"])
    exists = await in_thread(ctx.store.has_blob, digest)
    if not exists:
        raise NotFound(f'blob "{request.match_info["digest"]}" not found')
    return web.Response(status=200)


async def post_blob(request: web.Request, ctx: ModelRoutes) -> web.Response:
    digest = validate_digest(request.match_info["digest"])
    store = ctx.store
    if await in_thread(store.has_blob, digest):
        return web.Response(status=200)
    free = await in_thread(_free_bytes, store)
    if request.content_length is not None and request.content_length > free:
        raise InsufficientStorage("not enough disk space for this blob")
    fd, tmp = await in_thread(store.new_temp)
    h = hashlib.sha256()
    written = 0
    try:
        with os.fdopen(fd, "wb") as f:
            while chunk := await request.content.read(CHUNK):
                written += len(chunk)
                if written > free:  # size cap: never fill the disk with one upload
                    raise InsufficientStorage("not enough disk space for this blob")
                h.update(chunk)
                await in_thread(f.write, chunk)
            await in_thread(os.fsync, f.fileno())
        got = "sha256:" + h.hexdigest()
        if got != digest:
            raise BadRequest(f'digest mismatch, expected "{digest}", got "{got}"')
        await in_thread(store.commit_blob, tmp, digest)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise InsufficientStorage("no space left on device") from None
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return web.Response(status=201)


def _free_bytes(store: st.ModelStore) -> int:
    """Bytes an upload may use: free space minus a 1 GiB reserve (at least 0)."""
    v = os.statvfs(store.temp_dir())
    return max(0, v.f_bavail * v.f_frsize - (1 << 30))


# ---------- create ----------
async def create(request: web.Request, ctx: ModelRoutes) -> web.StreamResponse:
    req = await read_body(request, CreateRequest)
    target = req.target()
    name = ModelName.try_parse(target)
    if name is None:
        raise BadRequest("invalid model name")
    quant = req.quantize or req.quantization
    qtype = quantize.parse_type(quant) if quant else None
    msgs = [m.model_dump() for m in req.messages] if req.messages else None
    spec = CreateSpec(from_=req.from_, files=req.files or {}, adapters=req.adapters or {},
                      template=req.template, system=req.system, parameters=req.parameters,
                      license=req.licenses(), messages=msgs, renderer=req.renderer,
                      parser=req.parser, requires=req.requires)
    store = ctx.store
    noprune = ctx.noprune
    services = request.app.get(keys.SERVICES_KEY)
    registry = services.registry if services is not None else None
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[JsonObject | BaseException | None] = asyncio.Queue()
    writing = False  # past this point a create completes even if the client leaves

    def progress(p: JsonObject) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, p)

    def pull_progress(p: JsonObject) -> None:
        if p.get("status") != "success":  # the create's own success ends the stream
            progress(p)

    def work() -> None:
        create_model(store, name, spec, progress, noprune=noprune)

    async def run_all() -> None:
        nonlocal writing
        try:
            base = ModelName.try_parse(spec.from_) if spec.from_ and not spec.files else None
            if (base is not None and registry is not None
                    and await in_thread(store.find_manifest, base) is None):
                # Ollama pulls a FROM model that is not in the store first (an explicit
                # http:// name is the caller's consent to plain http)
                await registry.pull(base, base.scheme == "http", pull_progress)
            if qtype is not None:
                src = await in_thread(model_blob, store, spec)
                out = await quantize.quantize_blob(store, src, qtype, progress)
                if out != src:
                    spec.quantized = (src, out, qtype)
            writing = True
            await asyncio.to_thread(work)
        except BaseException as e:  # delivered to the handler, which maps it
            queue.put_nowait(e)
        finally:
            queue.put_nowait(None)

    task = asyncio.create_task(run_all())
    stream = req.stream is not False
    resp: web.StreamResponse | None = None
    last: JsonObject = {}
    error: BaseException | None = None
    gone = False
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                error = item
                continue
            last = item
            if stream and not gone:
                try:
                    if resp is None:
                        resp = web.StreamResponse(
                            headers={"Content-Type": "application/x-ndjson"})
                        await resp.prepare(request)
                    await resp.write(ndjson(item))
                except (ConnectionError, RuntimeError):
                    gone = True  # client left; the create itself still completes once
                    if not writing:  # ... writing: a pull or quantization is cancelled
                        task.cancel()
    finally:
        await asyncio.shield(task)  # the store write finishes even if the client left
    if error is not None:
        if not isinstance(error, OllamaError):  # details to the log, never to the client
            log.error("create failed", extra=kv(model=target, error=repr(error)))
            nospace = isinstance(error, OSError) and error.errno == errno.ENOSPC
            error = InsufficientStorage("no space left on device") if nospace \
                else InternalError()
        if resp is None:
            raise error
        if not gone:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await resp.write(ndjson({"error": error.message}))
    if resp is not None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await resp.write_eof()
        return resp
    return json_ok(last or {"status": "success"})


# ---------- tags ----------
def _list(store: st.ModelStore) -> ListResponse:
    out = []
    for e in store.list_models():
        config = _config_of(store, e.manifest)
        short = e.name.display_shortest()
        details = details_of(config)
        details.context_length = _positive(config.get("context_length"))
        details.embedding_length = _positive(config.get("embedding_length"))
        try:  # GGUF facts are cached per blob, so listing stays cheap
            m = store.model_from_entry(e)
            caps: list[str] | None = list(m.capabilities) or None
            if details.context_length is None or details.embedding_length is None:
                g = st.load_gguf(m.model_path)
                details.context_length = details.context_length or _positive(
                    g.context_length)
                details.embedding_length = details.embedding_length or _positive(
                    g.embedding_length)
        except (OSError, OllamaError, GGUFError) as err:
            log.warning("tags: cannot inspect model", extra=kv(model=short, error=err))
            caps = None
        out.append(ListModel(name=short, model=short, modified_at=format_time(e.modified_at),
                             size=e.size, digest=e.digest,
                             details=details, capabilities=caps))
    return ListResponse(models=out)


async def tags(request: web.Request, ctx: ModelRoutes) -> web.Response:
    resp = await in_thread(_list, ctx.store)
    body = resp.model_dump(exclude_none=True)
    for m in body["models"]:
        m["details"].setdefault("families", None)
    return json_ok(body)


# ---------- show ----------
def _resolve(store: st.ModelStore, text: str) -> Model:
    name = ModelName.try_parse(text)
    if name is None:
        raise NotFound(f"model '{text}' not found")
    try:
        return store.resolve(name)
    except NotFound:
        raise NotFound(f"model '{text}' not found") from None


def show_model(store: st.ModelStore, req: ShowRequest) -> JsonObject:
    m = _resolve(store, req.target())
    manifest = store.read_manifest(ModelName.parse(m.name))
    params = dict(m.params)
    if req.options:
        params.update(req.options)
    system = req.system if req.system else m.system
    try:
        g = st.load_gguf(m.model_path)
        info = model_info(g, verbose=req.verbose)
        # every tensor, as Ollama (verbose or not), bounded by MAX_SHOW_TENSORS
        tensors = [Tensor(name=t.name, type=t.type_name, shape=list(t.shape))
                   for t in g.tensors[:MAX_SHOW_TENSORS]] or None
        jinja = g.chat_template
    except (OSError, GGUFError) as e:
        log.warning("show: cannot read GGUF", extra=kv(path=m.model_path, error=e))
        info, tensors, jinja = {}, None, None
    projector_info = None
    if m.projector_paths:
        try:
            projector_info = model_info(st.load_gguf(m.projector_paths[0]), verbose=req.verbose)
        except (OSError, GGUFError):
            projector_info = None
    details = details_of(m.config, parent_of(manifest))
    modelfile = render_model(
        short_name=m.short_name, model_path=str(m.model_path),
        adapters=[str(p) for p in m.adapter_paths],
        projectors=[str(p) for p in m.projector_paths], template=m.template, system=system,
        params=params, licenses=m.license, messages=m.messages,
        renderer=_config_str(m.config, "renderer"), parser=_config_str(m.config, "parser"))
    resp = ShowResponse(
        license="\n".join(m.license) or None, modelfile=modelfile,
        parameters=parameter_lines(params) or None,
        template=m.template if m.template is not None else jinja, system=system,
        renderer=_config_str(m.config, "renderer") or None,
        parser=_config_str(m.config, "parser") or None, details=details,
        messages=[Message.model_validate({"role": x.get("role", ""),
                                          "content": x.get("content", "")})
                  for x in m.messages] or None,
        model_info=_finite(info), projector_info=_finite(projector_info) if projector_info
        else None, tensors=tensors, capabilities=list(m.capabilities),
        modified_at=format_time(m.modified_at), requires=_config_str(m.config, "requires") or None)
    body = resp.model_dump(exclude_none=True)
    body["model_info"] = body.get("model_info") or {}
    body["details"].setdefault("families", None)
    return body


def _positive(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def _config_str(config: JsonObject, key: str) -> str:
    v = config.get(key)
    return v if isinstance(v, str) else ""


def _finite(v: Any) -> Any:
    """JSON has no NaN/Inf: replace them (hostile GGUF values) with null."""
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


async def show(request: web.Request, ctx: ModelRoutes) -> web.Response:
    req = await read_body(request, ShowRequest)
    if not req.target():
        raise BadRequest("model is required")
    # serialised in the thread too: a verbose show can carry a million-element token array
    return await in_thread(lambda: json_ok(show_model(ctx.store, req)))


# ---------- copy / delete ----------
def _copy(store: st.ModelStore, req: CopyRequest) -> None:
    src = ModelName.try_parse(req.source)
    if src is None:
        raise BadRequest(f'source "{req.source}" is invalid')
    dst = ModelName.try_parse(req.destination)
    if dst is None:
        raise BadRequest(f'destination "{req.destination}" is invalid')
    with store.lock:
        try:
            data = store.manifest_bytes(src)
        except NotFound:
            raise NotFound(f'model "{req.source}" not found') from None
        store.write_manifest(dst, data)


async def copy(request: web.Request, ctx: ModelRoutes) -> web.Response:
    req = await read_body(request, CopyRequest)
    await in_thread(_copy, ctx.store, req)
    return web.Response(status=200)


def _delete(store: st.ModelStore, text: str, noprune: bool) -> None:
    name = ModelName.try_parse(text)
    if name is None:
        raise BadRequest(f'name "{text}" is invalid')
    try:
        store.delete(name, prune_layers=not noprune)
    except NotFound:
        raise NotFound(f"model '{text}' not found") from None


async def delete(request: web.Request, ctx: ModelRoutes) -> web.Response:
    req = await read_body(request, DeleteRequest)
    if not req.target():
        raise BadRequest("model is required")
    noprune = ctx.noprune
    await in_thread(_delete, ctx.store, req.target(), noprune)
    return web.Response(status=200)


# ---------- OpenAI ----------
def _openai_list(store: st.ModelStore) -> OpenAIModelList:
    return OpenAIModelList(data=[
        OpenAIModel(id=e.name.display_shortest(), created=int(e.modified_at.timestamp()),
                    owned_by=e.name.namespace)
        for e in store.list_models()])


async def v1_models(request: web.Request, ctx: ModelRoutes) -> web.Response:
    return json_ok(await in_thread(_openai_list, ctx.store))


def _openai_model(store: st.ModelStore, text: str) -> OpenAIModel:
    name = ModelName.try_parse(text)
    try:
        if name is None:
            raise NotFound("")
        e = store.entry(name)
    except NotFound:
        raise NotFound(f'model "{text}" not found') from None
    return OpenAIModel(id=text, created=int(e.modified_at.timestamp()), owned_by=name.namespace)


async def v1_model(request: web.Request, ctx: ModelRoutes) -> web.Response:
    return json_ok(await in_thread(_openai_model, ctx.store,
                                   request.match_info["model"]))


# ---------- wiring ----------
async def prepare_store(store: st.ModelStore, *, noprune: bool) -> None:
    """Start-up: the temp dir exists, and (unless OLLAMA_NOPRUNE) unreferenced blobs go."""
    await in_thread(store.temp_dir)
    if noprune:
        return
    try:
        await in_thread(store.prune)
    except OSError as e:
        log.warning("prune failed", extra=kv(error=e))


def setup(app: web.Application, store: st.ModelStore, *, noprune: bool) -> None:
    ctx = ModelRoutes(store, noprune)
    r = app.router
    r.add_route("HEAD", "/api/blobs/{digest}", bind(head_blob, ctx))
    r.add_post("/api/blobs/{digest}", bind(post_blob, ctx))
    r.add_post("/api/create", bind(create, ctx))
    r.add_get("/api/tags", bind(tags, ctx))
    r.add_post("/api/show", bind(show, ctx))
    r.add_post("/api/copy", bind(copy, ctx))
    r.add_delete("/api/delete", bind(delete, ctx))
    r.add_get("/v1/models", bind(v1_models, ctx))
    r.add_get("/v1/models/{model:.+}", bind(v1_model, ctx))


__all__ = ["prepare_store", "read_body", "setup"]
