"""Typed aiohttp application keys shared by the server modules."""

from __future__ import annotations

from aiohttp import web

from ollamapy.config import Settings

SETTINGS_KEY = web.AppKey("settings", Settings)

# Model store (issue 3): created at app start-up from settings.models_dir.
from ollamapy.store.store import ModelStore  # noqa: E402

STORE_KEY = web.AppKey("store", ModelStore)

# Registry pull/push (issue 7): the service owning the registry HTTP session and shared downloads.
from ollamapy.registry.service import RegistryService  # noqa: E402

REGISTRY_KEY = web.AppKey("registry", RegistryService)

# Scheduler (issue 4): created/stopped in the app's cleanup_ctx (server/routes/scheduler.py).
from ollamapy.scheduler import Scheduler  # noqa: E402

SCHEDULER_KEY = web.AppKey("scheduler", Scheduler)
