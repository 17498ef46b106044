"""Wire types of Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`).

Unknown fields are ignored, as Anthropic's own server tolerates newer SDK fields; content blocks
are one permissive model (every block field optional) so a block type we do not use (e.g.
`document`, `server_tool_use`) decodes and the translator decides what to do with it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ollamapy.inference.jsontypes import JsonObject


class AWire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ImageSource(AWire):
    type: str
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class ContentBlock(AWire):
    """text · image · tool_use · tool_result · thinking · redacted_thinking (and others)."""

    type: str
    text: str | None = None
    source: ImageSource | None = None
    id: str | None = None
    name: str | None = None
    input: JsonObject | None = None
    tool_use_id: str | None = None
    content: str | list[JsonObject] | None = None
    is_error: bool | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None  # redacted_thinking's opaque payload


class MessageParam(AWire):
    # Claude Code >= 2.1 also sends `system` turns between user turns (mid-conversation
    # instructions); Ollama passes any role through, lower-cased.
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlock]

    @field_validator("role", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v


class Tool(AWire):
    type: str | None = None  # None / "custom": a client tool; anything else is a server tool
    name: str
    description: str | None = None
    input_schema: JsonObject = Field(default_factory=dict)


class ToolChoice(AWire):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingConfig(AWire):
    type: str  # "enabled" | "disabled" | "adaptive"
    budget_tokens: int | None = None


class OutputConfig(AWire):
    effort: str | None = None


class Metadata(AWire):
    user_id: str | None = None


class CountTokensRequest(AWire):
    model: str = ""
    messages: list[MessageParam] = Field(default_factory=list)
    system: str | list[ContentBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: int | None = None  # required: checked by the translator with Ollama's text
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    metadata: Metadata | None = None
    output_config: OutputConfig | None = None
    stream: bool = False


StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]

# Anthropic's error `type` per HTTP status (its docs' table; 503 and 529 are both "overloaded").
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error"}


def anthropic_status(status: int) -> int:
    """The status Anthropic clients expect: a full queue (our 503) is Anthropic's 529, which
    the SDK and Claude Code retry with backoff."""
    return 529 if status == 503 else status


def anthropic_error_body(status: int, message: str) -> JsonObject:
    """`{"type": "error", "error": {"type": ..., "message": ...}}`, the envelope every
    `/v1/messages*` error uses (route errors, middleware errors and mid-stream `error` events)."""
    kind = ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def is_anthropic_path(path: str) -> bool:
    return path == "/v1/messages" or path.startswith("/v1/messages/")
