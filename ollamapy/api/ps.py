"""Wire format of `GET /api/ps` (Ollama's api.ProcessResponse)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ollamapy.api.models import ModelDetails


class ProcessDevice(BaseModel):
    """Where part of a model lives (ollamapy extension, only for a model split over RPC
    workers): a llama.cpp device, the worker it is on, its layers and estimated bytes."""

    name: str
    worker: str = ""  # host:port of the RPC worker; "" for this host
    layers: int
    size: int


class ProcessModel(BaseModel):
    name: str
    model: str
    size: int
    digest: str
    details: ModelDetails = Field(default_factory=ModelDetails)
    expires_at: str
    size_vram: int
    context_length: int
    devices: list[ProcessDevice] | None = None  # extension: omitted unless split over workers


class ProcessResponse(BaseModel):
    models: list[ProcessModel] = Field(default_factory=list)
