"""App factory: middlewares, routes, and the start-up/clean-up of long-lived services.

Route families register themselves through their module's `setup(app)`; services that need
start/stop (scheduler, upstream client session) hook into `app.cleanup_ctx`.
"""

from __future__ import annotations

import logging

from aiohttp import web

from ollamapy.config import Settings, load_settings
from ollamapy.server import access, metrics, middleware, security
from ollamapy.server.keys import SETTINGS_KEY
from ollamapy.server.routes import base, inference, models, openai, registry, scheduler

log = logging.getLogger("ollamapy.server")


def create_app(settings: Settings | None = None) -> web.Application:
    settings = settings or load_settings()
    # metrics.track and the access log sit outside security: rejected requests count too.
    app = web.Application(middlewares=[metrics.track, access.middleware(settings),
                                       *security.middlewares(settings), middleware.errors],
                          client_max_size=settings["OLLAMAPY_MAX_BODY_BYTES"])
    security.setup(app, settings)  # CORS headers on every response, exposure warning at start
    app[SETTINGS_KEY] = settings
    for family in (base, models, scheduler, inference, openai, registry):
        family.setup(app)
    metrics.setup(app, public=settings["OLLAMAPY_METRICS_AUTH"] == "none")
    return app
