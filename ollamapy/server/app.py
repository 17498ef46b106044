"""App factory: builds every long-lived service once, hands each route family what it uses,
and owns the services' start-up and shutdown.

Start: the store's temp dir and prune, then the scheduler (in a cleanup context). Shutdown:
`on_shutdown` (which aiohttp runs before it waits for in-flight handlers) stops downloads and
the scheduler, so SIGTERM stops every runner within seconds even while streams are open; the
cleanup context stops the scheduler again (idempotent) for app runners that skip shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ollamapy.config import Settings, load_settings
from ollamapy.server import access, metrics, middleware, security
from ollamapy.server.keys import SCHEDULER_KEY, SERVICES_KEY, STORE_KEY
from ollamapy.server.routes import (
    anthropic,
    base,
    inference,
    models,
    openai,
    registry,
    rerank,
    responses,
    scheduler,
)
from ollamapy.server.services import Services, build_services


def create_app(settings: Settings | None = None, *,
               services: Services | None = None) -> web.Application:
    settings = settings or (services.settings if services is not None else load_settings())
    services = services or build_services(settings)
    deadlines = middleware.deadlines(settings.write_timeout, settings.body_timeout)
    # Metrics and the access log sit outside security: rejected requests count too.
    app = web.Application(middlewares=[metrics.tracker(access.recorder(settings)),
                                       *security.middlewares(settings), middleware.errors,
                                       deadlines],
                          client_max_size=settings.max_body_bytes)
    security.setup(app, settings)  # CORS headers on every response, exposure warning at start
    app[SERVICES_KEY] = services
    # The engine's per-request services (server/metered.py) read these from the app.
    app[STORE_KEY] = services.store
    app[SCHEDULER_KEY] = services.scheduler
    base.setup(app)
    models.setup(app, services.store, noprune=settings.noprune)
    scheduler.setup(app, services.scheduler)
    inference.setup(app)
    openai.setup(app)
    anthropic.setup(app)
    responses.setup(app)
    rerank.setup(app)
    registry.setup(app, services.registry)
    metrics.setup(app, services.scheduler)
    app.on_startup.append(_start_store)
    app.cleanup_ctx.append(_scheduler_ctx)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_close_registry)
    return app


async def _start_store(app: web.Application) -> None:
    s = app[SERVICES_KEY]
    await models.prepare_store(s.store, noprune=s.settings.noprune)


async def _scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    sched = app[SERVICES_KEY].scheduler
    await sched.start()
    try:
        yield
    finally:
        await sched.stop()


async def _on_shutdown(app: web.Application) -> None:
    s = app[SERVICES_KEY]
    # Stop downloads now (progress is kept) so in-flight pulls end promptly.
    await s.registry.downloader.aclose()
    await s.scheduler.stop()


async def _close_registry(app: web.Application) -> None:
    await app[SERVICES_KEY].registry.aclose()
