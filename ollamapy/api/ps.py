"""Wire format of `GET /api/ps` (Ollama's api.ProcessResponse)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ollamapy.api.models import ModelDetails


class ProcessModel(BaseModel):
    name: str
    model: str
    size: int
    digest: str
    details: ModelDetails = Field(default_factory=ModelDetails)
    expires_at: str
    size_vram: int
    context_length: int


class ProcessResponse(BaseModel):
    models: list[ProcessModel] = Field(default_factory=list)
