"""Wire types of OpenAI's Responses API (`/v1/responses`).

Unknown fields are ignored (the SDK adds fields faster than servers learn them). Input items are
one permissive model keyed by `type` (a bare `{"role", "content"}` is a message, as OpenAI
accepts); the translator checks what each type needs.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ollamapy.inference.jsontypes import JsonObject


class RWire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class InputContent(RWire):
    """input_text · input_image · output_text · refusal (and input_file, refused)."""

    type: str
    text: str | None = None
    image_url: str | None = None
    detail: str | None = None
    file_id: str | None = None
    refusal: str | None = None


class InputItem(RWire):
    """message · function_call · function_call_output · reasoning."""

    type: str | None = None
    role: str | None = None
    content: str | list[InputContent] | None = None
    id: str | None = None
    status: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[InputContent] | None = None
    summary: list[JsonObject] | None = None
    encrypted_content: str | None = None


class FunctionTool(RWire):
    type: str  # "function", or "namespace" (Codex: a group of member functions in `tools`)
    name: str | None = None
    description: str | None = None
    parameters: JsonObject | None = None
    strict: bool | None = None
    tools: list[FunctionTool] | None = None  # a namespace's members


class Reasoning(RWire):
    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None


class TextFormat(RWire):
    type: str = "text"  # "text" | "json_object" | "json_schema"
    name: str | None = None
    json_schema: JsonObject | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class TextConfig(RWire):
    format: TextFormat | None = None
    verbosity: str | None = None


class ResponsesRequest(RWire):
    model: str = ""
    input: str | list[InputItem] = ""
    instructions: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: str | JsonObject | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    reasoning: Reasoning | None = None
    text: TextConfig | None = None
    stream: bool = False
    store: bool | None = None
    previous_response_id: str | None = None
    conversation: str | JsonObject | None = None
    background: bool | None = None
    truncation: str | None = None
    metadata: JsonObject | None = None
    user: str | None = None
    include: list[str] | None = None
