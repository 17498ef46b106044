"""Typed aiohttp application keys shared by the server modules."""

from __future__ import annotations

from aiohttp import web

from ollamapy.config import Settings
from ollamapy.registry.service import RegistryService
from ollamapy.scheduler import Scheduler
from ollamapy.store.store import ModelStore

SETTINGS_KEY = web.AppKey("settings", Settings)
# Model store: created at app start-up from settings.models_dir (routes/models.py).
STORE_KEY = web.AppKey("store", ModelStore)
# Registry pull/push: owns the registry HTTP session and shared downloads (routes/registry.py).
REGISTRY_KEY = web.AppKey("registry", RegistryService)
# Scheduler: created/stopped with the app (routes/scheduler.py).
SCHEDULER_KEY = web.AppKey("scheduler", Scheduler)
