"""`GET /api/ps`: the loaded models as the scheduler reports them.

The scheduler itself is built, started and stopped by the app factory (`server/app.py`)."""

from __future__ import annotations

from aiohttp import web

from ollamapy.api.ps import ProcessDevice, ProcessModel, ProcessResponse
from ollamapy.gofmt import format_time
from ollamapy.jsoncodec import dumps
from ollamapy.scheduler import RunnerStatus
from ollamapy.server.routes.models import details_of
from ollamapy.server.services import LoadedModels


def process_model(s: RunnerStatus) -> ProcessModel:
    m = s.model
    return ProcessModel(name=m.short_name, model=m.short_name, size=s.size, digest=m.digest,
                        details=details_of(m.config), expires_at=format_time(s.expires_at),
                        size_vram=s.size_vram, context_length=s.context_length,
                        devices=[ProcessDevice(name=d.name, worker=d.endpoint, layers=d.layers,
                                               size=d.size) for d in s.devices] or None)


def ps_body(scheduler: LoadedModels) -> bytes:
    body = ProcessResponse(models=[process_model(s) for s in scheduler.ps()])
    data = body.model_dump()  # every field, `families` null when unknown, as Ollama writes
    for m in data["models"]:
        if m["devices"] is None:  # Ollama's shape unless the model is split over workers
            del m["devices"]
    return dumps(data)


def setup(app: web.Application, scheduler: LoadedModels) -> None:
    async def ps(request: web.Request) -> web.Response:
        return web.Response(body=ps_body(scheduler), content_type="application/json",
                            charset="utf-8")

    app.router.add_get("/api/ps", ps)
