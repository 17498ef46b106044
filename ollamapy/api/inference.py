"""Wire types of the native inference API (`/api/generate`, `/api/chat`, `/api/embed`,
`/api/embeddings`): what clients send, checked once, with Ollama's error texts."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ollamapy.errors import BadRequest
from ollamapy.inference.jsontypes import JsonObject

THINK_LEVELS = ("low", "medium", "high", "max")



class Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ToolCallFunction(Wire):
    index: int | None = None
    name: str
    arguments: JsonObject = Field(default_factory=dict)


class ToolCall(Wire):
    id: str | None = None
    function: ToolCallFunction


class ToolFunction(Wire):
    name: str
    description: str | None = None
    parameters: JsonObject = Field(default_factory=dict)


class Tool(Wire):
    type: str = "function"
    items: Any = None
    function: ToolFunction


class Message(Wire):
    role: str
    content: str = ""
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None

    @field_validator("role")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower()

    @field_validator("content", mode="before")
    @classmethod
    def _null_content(cls, v: Any) -> Any:
        return "" if v is None else v


Think = bool | str | None


class InferenceBase(Wire):
    model: str = ""
    stream: bool | None = None
    format: Any = None
    keep_alive: Any = None
    options: JsonObject | None = None
    think: Think = None
    truncate: bool | None = None
    shift: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    debug_render_only: bool = Field(default=False, alias="_debug_render_only")

    @field_validator("think")
    @classmethod
    def _think(cls, v: Any) -> Any:
        if isinstance(v, str) and v not in THINK_LEVELS:
            raise ValueError(f"invalid think value: {json.dumps(v)}")
        return v

    @field_validator("top_logprobs")
    @classmethod
    def _top(cls, v: int | None) -> int | None:
        if v is not None and not 0 <= v <= 20:
            raise ValueError("top_logprobs must be between 0 and 20")
        return v


class GenerateRequest(InferenceBase):
    prompt: str = ""
    suffix: str = ""
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    images: list[str] | None = None


class ChatRequest(InferenceBase):
    messages: list[Message] = Field(default_factory=list)
    tools: list[Tool] | None = None


class EmbedRequest(Wire):
    model: str = ""
    input: Any = None
    truncate: bool | None = None
    dimensions: int | None = None
    keep_alive: Any = None
    options: JsonObject | None = None

    def inputs(self) -> list[str]:
        v = self.input
        if v is None or v == "":
            return []
        if isinstance(v, str):
            return [v]
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return list(v)
        raise BadRequest("invalid input type")


class EmbeddingsRequest(Wire):
    model: str = ""
    prompt: str = ""
    keep_alive: Any = None
    options: JsonObject | None = None


DoneReason = Literal["stop", "length", "load", "unload", ""]


class Metrics(Wire):
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None
