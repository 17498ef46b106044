"""Typed aiohttp application keys shared by the server modules.

The app factory builds every service once (`server/services.py`) and hands them to the route
families it sets up; `SERVICES_KEY` holds the same bundle for hooks and tests that only have
the app. STORE_KEY / SCHEDULER_KEY are what server/metered.py builds each request's engine
services from (tests' route apps set just these two)."""

from __future__ import annotations

from aiohttp import web

from ollamapy.scheduler import Scheduler
from ollamapy.server.services import Services
from ollamapy.store.store import ModelStore

SERVICES_KEY = web.AppKey("services", Services)
STORE_KEY = web.AppKey("store", ModelStore)
SCHEDULER_KEY = web.AppKey("scheduler", Scheduler)
