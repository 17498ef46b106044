"""Wire types of `/api/pull` and `/api/push` (Ollama's api.PullRequest / PushRequest /
ProgressResponse). Unknown fields are ignored like Go's decoder; `username`/`password` are
accepted and ignored (as in Ollama)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr, ValidationError

from ollamapy.errors import BadRequest


class PullRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: StrictStr = ""
    name: StrictStr = ""        # deprecated spelling of `model`
    insecure: StrictBool = False
    stream: StrictBool | None = None
    username: StrictStr = ""
    password: StrictStr = ""

    def target(self) -> str:
        return self.model or self.name

    def streaming(self) -> bool:
        """`stream` defaults to true when absent (Go *bool)."""
        return self.stream is not False


class PushRequest(PullRequest):
    pass


class ProgressResponse(BaseModel):
    status: str
    digest: str = ""
    total: int = 0
    completed: int = 0

    def wire(self) -> dict[str, Any]:
        """Go's `omitempty`: digest/total/completed are left out when empty or zero."""
        out: dict[str, Any] = {"status": self.status}
        if self.digest:
            out["digest"] = self.digest
        if self.total:
            out["total"] = self.total
        if self.completed:
            out["completed"] = self.completed
        return out


_GO_TYPES = {"model": "string", "name": "string", "insecure": "bool", "stream": "bool",
             "username": "string", "password": "string"}


def decode_request(cls: type[PullRequest], body: bytes) -> PullRequest:
    """Bytes -> request, or BadRequest worded like Ollama's (Go) decoder."""
    if not body.strip():
        raise BadRequest("missing request body")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"invalid character in request body: {e}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"json: cannot unmarshal {_kind(data)} into Go value of type "
                         f"api.{cls.__name__}")
    data = {k: v for k, v in data.items() if v is not None}  # Go: null leaves the zero value
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        loc = str(e.errors()[0]["loc"][0])
        got = _kind(data.get(loc))
        raise BadRequest(f"json: cannot unmarshal {got} into Go struct field "
                         f"{cls.__name__}.{loc} of type {_GO_TYPES.get(loc, 'value')}") from None


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if v is None:
        return "null"
    return "object"
