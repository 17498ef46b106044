"""Typed aiohttp application keys shared by the server modules.

The app factory builds every service once (`server/services.py`) and hands them to the route
families it sets up; `SERVICES_KEY` holds the same bundle for hooks and tests that only have
the app. STORE_KEY / SCHEDULER_KEY / SETTINGS_KEY are transitional, for route modules that still
read the app (inference.py, openai.py) until they take `Services` too."""

from __future__ import annotations

from aiohttp import web

from ollamapy.config import Settings
from ollamapy.scheduler import Scheduler
from ollamapy.server.services import Services
from ollamapy.store.store import ModelStore

SERVICES_KEY = web.AppKey("services", Services)
SETTINGS_KEY = web.AppKey("settings", Settings)
STORE_KEY = web.AppKey("store", ModelStore)
SCHEDULER_KEY = web.AppKey("scheduler", Scheduler)
