"""`GET /api/ps`, and the scheduler's life: created at start-up, stopped at shutdown.

The scheduler is stopped in `on_shutdown` (which aiohttp runs before it waits for in-flight
handlers), so SIGTERM to the server stops every runner within seconds even while streams are
open; the cleanup context stops it again (idempotent) for app runners that skip shutdown.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from aiohttp import web

from ollamapy.api.decode import go_time
from ollamapy.api.ps import ProcessModel, ProcessResponse
from ollamapy.scheduler import RunnerStatus, Scheduler
from ollamapy.server.keys import SCHEDULER_KEY, SETTINGS_KEY
from ollamapy.server.routes.models import details_of


def process_model(s: RunnerStatus) -> ProcessModel:
    m = s.model
    return ProcessModel(name=m.short_name, model=m.short_name, size=s.size, digest=m.digest,
                        details=details_of(m.config), expires_at=go_time(s.expires_at),
                        size_vram=s.size_vram, context_length=s.context_length)


async def ps(request: web.Request) -> web.Response:
    body = ProcessResponse(models=[process_model(s) for s in request.app[SCHEDULER_KEY].ps()])
    data = body.model_dump()  # every field, `families` null when unknown, as Ollama writes
    return web.Response(body=json.dumps(data).encode(), content_type="application/json",
                        charset="utf-8")


async def _scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    scheduler = app[SCHEDULER_KEY]
    await scheduler.start()
    try:
        yield
    finally:
        await scheduler.stop()


async def _on_shutdown(app: web.Application) -> None:
    await app[SCHEDULER_KEY].stop()


def setup(app: web.Application) -> None:
    app[SCHEDULER_KEY] = Scheduler(app[SETTINGS_KEY])  # started in the cleanup context
    app.cleanup_ctx.append(_scheduler_ctx)
    app.on_shutdown.append(_on_shutdown)
    app.router.add_get("/api/ps", ps)
