"""The app factory builds every service once and the route families use what they are handed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ollamapy.config import load_settings
from ollamapy.scheduler import RunnerStatus
from ollamapy.server.app import create_app
from ollamapy.server.keys import SCHEDULER_KEY, SERVICES_KEY, STORE_KEY
from ollamapy.server.routes import scheduler as scheduler_routes
from ollamapy.server.services import build_services
from ollamapy.store.model import Model
from ollamapy.store.register import register_gguf
from tests.unit.test_gguf import write_fixture


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    settings = load_settings({"OLLAMA_MODELS": str(tmp_path / "models"),
                              "OLLAMAPY_RUNNERS": str(tmp_path / "none"), "PATH": ""})
    services = build_services(settings, environ={"PATH": ""})
    register_gguf(settings.models_dir, write_fixture(tmp_path / "t.gguf"), "tiny")
    app = create_app(services=services)
    assert app[SERVICES_KEY] is services
    assert app[STORE_KEY] is services.store and app[SCHEDULER_KEY] is services.scheduler
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_routes_use_the_services_the_factory_built(client: TestClient) -> None:
    tags = await (await client.get("/api/tags")).json()
    assert [m["name"] for m in tags["models"]] == ["tiny:latest"]
    show = await client.post("/api/show", json={"model": "tiny"})
    assert show.status == 200
    assert (await (await client.get("/api/ps")).json()) == {"models": []}
    assert (await client.post("/api/pull", json={"model": ""})).status == 400
    services = client.app[SERVICES_KEY]  # type: ignore[index]
    assert services.scheduler.closed is False  # started by the app's cleanup context


async def test_ps_route_takes_any_loaded_models_provider() -> None:
    m = Model(name="a", short_name="a:latest", digest="0" * 64, model_path=Path("/m"), size=5,
              modified_at=datetime(2026, 1, 1))

    class Loaded:
        def ps(self) -> list[RunnerStatus]:
            return [RunnerStatus(model=m, size=5, size_vram=0, context_length=4096, pid=1,
                                 expires_at=datetime(2026, 1, 1).astimezone(), state="ready")]

    app = web.Application()
    scheduler_routes.setup(app, Loaded())
    async with TestClient(TestServer(app)) as c:
        body = await (await c.get("/api/ps")).json()
    assert [(x["name"], x["size"], x["context_length"]) for x in body["models"]] == [
        ("a:latest", 5, 4096)]
