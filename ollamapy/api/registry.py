"""Wire types of `/api/pull` and `/api/push` (Ollama's api.PullRequest / PushRequest /
ProgressResponse). Unknown fields are ignored like Go's decoder; `username`/`password` are
accepted and ignored (as in Ollama)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from ollamapy.inference.jsontypes import JsonObject


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

    def wire(self) -> JsonObject:
        """Go's `omitempty`: digest/total/completed are left out when empty or zero."""
        out: JsonObject = {"status": self.status}
        if self.digest:
            out["digest"] = self.digest
        if self.total:
            out["total"] = self.total
        if self.completed:
            out["completed"] = self.completed
        return out


