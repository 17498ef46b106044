"""Typed aiohttp application keys shared by the server modules."""

from __future__ import annotations

from aiohttp import web

from ollamapy.config import Settings

SETTINGS_KEY = web.AppKey("settings", Settings)
