"""App factory: middlewares, routes, and the start-up/clean-up of long-lived services.

Route families register themselves through their module's `setup(app)`; services that need
start/stop (scheduler, upstream client session) hook into `app.cleanup_ctx`.
"""

from __future__ import annotations

import logging

from aiohttp import web

from ollamapy.config import Settings, load_settings
from ollamapy.server import middleware, security
from ollamapy.server.keys import SETTINGS_KEY
from ollamapy.server.routes import base

log = logging.getLogger("ollamapy.server")


def create_app(settings: Settings | None = None) -> web.Application:
    settings = settings or load_settings()
    app = web.Application(middlewares=[*security.middlewares(settings), middleware.errors],
                          client_max_size=1024**3)
    security.setup(app, settings)  # CORS headers on every response, exposure warning at start
    app[SETTINGS_KEY] = settings
    base.setup(app)
    for setup in _optional_route_modules():
        setup(app)
    return app


def _optional_route_modules() -> list:
    """Route families added by later modules; each exposes setup(app)."""
    import importlib

    found = []
    for name in ("models", "scheduler", "inference", "openai", "registry"):
        try:
            mod = importlib.import_module(f"ollamapy.server.routes.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"ollamapy.server.routes.{name}":
                raise
            continue
        found.append(mod.setup)
    return found
