"""Claude Code (`claude -p`) against ollamapy: what it sends to `/v1/messages` and what it
makes of the answers, including the prompt-too-long error its full prompt gets on an 8k model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.agents.conftest import (
    CLAUDE_CODE,
    MAX_ANSWER,
    TOOLS_MODEL,
    AgentServer,
    install,
    run_agent,
)
from tests.agents.recorder import Recorded

pytestmark = [pytest.mark.e2e, pytest.mark.agents, pytest.mark.timeout(900)]

QUIET = {  # no telemetry, update checks or error reports: there is no network but loopback
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1"}


@pytest.fixture(scope="module")
def claude(agent_server: AgentServer) -> Path:
    exe = install(*CLAUDE_CODE)
    out = agent_server.launch_config("claude")
    assert "settings.json" in out
    return exe


def messages_calls(srv: AgentServer, since: int) -> list[Recorded]:
    return [r for r in srv.proxy.requests[since:] if r.path_qs.startswith("/v1/messages")]


def sse_events(raw: bytes) -> list[tuple[str, dict[str, object]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        lines = dict(ln.split(": ", 1) for ln in block.splitlines() if ": " in ln)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_full_prompt_is_too_long_for_8k(claude: Path, agent_server: AgentServer) -> None:
    """Claude Code's own system prompt and tool list (~12k tokens) do not fit SmolLM2's 8192:
    Anthropic's `prompt is too long` 400, which Claude Code reports as such (not retried)."""
    since = len(agent_server.proxy.requests)
    r = run_agent([str(claude), "-p", "say hi", "--model", TOOLS_MODEL], agent_server,
                  QUIET, timeout=300)
    calls = messages_calls(agent_server, since)
    assert calls, f"Claude Code sent nothing to /v1/messages:\n{r.stdout}\n{r.stderr}"
    first = calls[0]
    assert first.method == "POST" and first.path_qs == "/v1/messages?beta=true"
    assert first.headers.get("anthropic-version") == "2023-06-01"
    assert first.headers.get("Authorization") == "Bearer ollama"
    body = first.json()
    assert isinstance(body, dict) and body["model"] == TOOLS_MODEL and body["stream"] is True
    assert "system" in [m["role"] for m in body["messages"]]  # its mid-conversation system turn
    assert len(body["tools"]) >= 5 and body["max_tokens"] > 0
    assert first.status == 400
    err = json.loads(first.answer)
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    m = re.fullmatch(r"prompt is too long: (\d+) tokens > 8192 maximum", err["error"]["message"])
    assert m and int(m.group(1)) > 8192
    assert r.returncode != 0
    assert "Prompt is too long" in r.stdout + r.stderr
    assert all(c.status == 400 for c in calls)


def test_small_prompt_answers(claude: Path, agent_server: AgentServer) -> None:
    """With no built-in tools and a one-line system prompt the request fits: a streamed
    answer that Claude Code prints as the model wrote it."""
    since = len(agent_server.proxy.requests)
    r = run_agent([str(claude), "-p", "say hi", "--model", TOOLS_MODEL, "--tools", "",
                   "--system-prompt", "You are a helpful assistant.",
                   "--no-session-persistence"], agent_server,
                  {**QUIET, "CLAUDE_CODE_MAX_OUTPUT_TOKENS": str(MAX_ANSWER)}, timeout=600)
    calls = messages_calls(agent_server, since)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert calls and all(c.status == 200 for c in calls)
    body = calls[-1].json()
    assert isinstance(body, dict) and body["max_tokens"] == MAX_ANSWER and body["tools"] == []
    events = sse_events(calls[-1].answer)
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    text = "".join(str(d["delta"]["text"]) for n, d in events  # type: ignore[index]
                   if n == "content_block_delta" and d["delta"]["type"] == "text_delta")  # type: ignore[index]
    assert text.strip() and text.strip() in r.stdout
