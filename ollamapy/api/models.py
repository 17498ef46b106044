"""Wire types of the model-management API (create, blobs, tags, show, copy, delete, /v1/models).

Field names and shapes follow Ollama's `api/types.go`; unknown request fields are ignored, like
Go's decoder does.
"""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from ollamapy.inference.jsontypes import JsonObject


class _Req(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Message(_Req):
    role: str = ""
    content: str = ""


class CreateRequest(_Req):
    model: str | None = None
    name: str | None = None                  # legacy spelling of `model`
    from_: str | None = Field(default=None, alias="from")
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    template: str | None = None
    system: str | None = None
    parameters: JsonObject | None = None
    license: str | list[str] | None = None
    messages: list[Message] | None = None
    stream: bool | None = None
    quantize: str | None = None
    quantization: str | None = None
    renderer: str | None = None
    parser: str | None = None
    requires: str | None = None

    def target(self) -> str:
        return self.model or self.name or ""

    def licenses(self) -> list[str] | None:
        if self.license is None:
            return None
        return [self.license] if isinstance(self.license, str) else list(self.license)


class ProgressResponse(BaseModel):
    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


class ModelDetails(BaseModel):
    parent_model: str = ""
    format: str = ""
    family: str = ""
    families: list[str] | None = None
    parameter_size: str = ""
    quantization_level: str = ""
    context_length: int | None = None  # /api/tags: config, else the GGUF's (omitted if 0)
    embedding_length: int | None = None

    @model_serializer(mode="wrap")
    def _omit_lengths(self, handler: SerializerFunctionWrapHandler) -> JsonObject:
        """Go's `omitempty` on the two lengths, whatever the caller's exclude_none."""
        data: JsonObject = handler(self)
        for key in ("context_length", "embedding_length"):
            if not data.get(key):
                data.pop(key, None)
        return data


class ListModel(BaseModel):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: ModelDetails
    capabilities: list[str] | None = None


class ListResponse(BaseModel):
    models: list[ListModel]


class ShowRequest(_Req):
    model: str | None = None
    name: str | None = None
    verbose: bool = False
    system: str | None = None
    template: str | None = None
    options: JsonObject | None = None

    def target(self) -> str:
        return self.model or self.name or ""


class Tensor(BaseModel):
    name: str
    type: str
    shape: list[int]


class ShowResponse(BaseModel):
    license: str | None = None
    modelfile: str
    parameters: str | None = None
    template: str | None = None
    system: str | None = None
    renderer: str | None = None
    parser: str | None = None
    details: ModelDetails
    messages: list[Message] | None = None
    model_info: JsonObject
    projector_info: JsonObject | None = None
    tensors: list[Tensor] | None = None
    capabilities: list[str]
    modified_at: str
    requires: str | None = None


class CopyRequest(_Req):
    source: str = ""
    destination: str = ""


class DeleteRequest(_Req):
    model: str | None = None
    name: str | None = None

    def target(self) -> str:
        return self.model or self.name or ""


class OpenAIModel(BaseModel):
    id: str
    object: str = "model"
    created: int
    owned_by: str


class OpenAIModelList(BaseModel):
    object: str = "list"
    data: list[OpenAIModel]
