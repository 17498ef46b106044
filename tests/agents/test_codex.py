"""Codex CLI (`codex exec`) against ollamapy: what it sends to `/v1/responses` with the
configuration `ollamapy launch codex --config` writes, and what it prints."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from tests.agents.conftest import CODEX, TOOLS_MODEL, AgentServer, install, run_agent
from tests.agents.recorder import Recorded

pytestmark = [pytest.mark.e2e, pytest.mark.agents, pytest.mark.timeout(900)]

QUIET = ["-c", "analytics.enabled=false", "-c", "check_for_update_on_startup=false"]


@pytest.fixture(scope="module")
def codex(agent_server: AgentServer) -> Path:
    exe = install(*CODEX)
    out = agent_server.launch_config("codex")
    assert "context window 8192" in out
    return exe


def argv(exe: Path, prompt: str) -> list[str]:
    return [str(exe), "exec", "--skip-git-repo-check", "--profile", "ollamapy", "-c",
            'model_provider="ollamapy"', "-m", TOOLS_MODEL, *QUIET, prompt]


def responses_calls(srv: AgentServer, since: int) -> list[Recorded]:
    return [r for r in srv.proxy.requests[since:] if r.path_qs.startswith("/v1/responses")]


def sse_events(raw: bytes) -> list[dict[str, object]]:
    return [json.loads(ln[6:]) for ln in raw.decode().splitlines() if ln.startswith("data: ")]


def test_launch_config_is_what_codex_reads(codex: Path, agent_server: AgentServer) -> None:
    profile = tomllib.loads((agent_server.home / ".codex" / "ollamapy.config.toml").read_text())
    assert profile["web_search"] == "disabled"
    catalog = json.loads(Path(profile["model_catalog_json"]).read_text())
    assert catalog["models"][0] == {**catalog["models"][0], "slug": TOOLS_MODEL,
                                    "context_window": 8192}


def test_exec_answers(codex: Path, agent_server: AgentServer) -> None:
    since = len(agent_server.proxy.requests)
    r = run_agent(argv(codex, "say hi"), agent_server, {"OPENAI_API_KEY": "ollama"},
                  timeout=800)
    calls = responses_calls(agent_server, since)
    assert calls and all(c.status == 200 for c in calls), f"{r.stdout}\n{r.stderr}"
    req = calls[0]
    assert req.method == "POST" and req.path_qs == "/v1/responses"
    # a provider without env_key sends no credentials (launch adds env_key = "OLLAMA_API_KEY"
    # only for an API-key server), so Codex needs no login and no OpenAI key here
    assert "Authorization" not in req.headers
    assert req.headers.get("originator") == "codex_exec"
    body = req.json()
    assert isinstance(body, dict) and body["model"] == TOOLS_MODEL and body["stream"] is True
    kinds = {t["type"] for t in body["tools"]}
    assert "web_search" not in kinds  # the profile's web_search = "disabled"
    assert "function" in kinds
    roles = [i.get("role") for i in body["input"] if i.get("type") == "message"]
    assert roles[-1] == "user" and "developer" in roles
    events = sse_events(calls[-1].answer)
    seq = [e["sequence_number"] for e in events]
    assert seq == list(range(len(events)))
    assert events[0]["type"] == "response.created"
    text = "".join(str(e["delta"]) for e in events if e["type"] == "response.output_text.delta")
    assert text.strip() and text.strip().splitlines()[0] in r.stdout + r.stderr
    if events[-1]["type"] == "response.incomplete":  # the answer hit num_predict
        assert r.returncode != 0
        assert "Incomplete response returned, reason: max_output_tokens" in r.stderr
    else:
        assert events[-1]["type"] == "response.completed"
        assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
        assert text.strip().splitlines()[0] in r.stdout  # the final message, on stdout


def test_exec_prompt_too_long(codex: Path, agent_server: AgentServer) -> None:
    """A prompt over the context: the Responses 400 in OpenAI's envelope, shown by Codex."""
    since = len(agent_server.proxy.requests)
    r = run_agent(argv(codex, "Summarise: " + "lorem ipsum dolor sit amet " * 2000),
                  agent_server, {"OPENAI_API_KEY": "ollama"}, timeout=300)
    calls = responses_calls(agent_server, since)
    assert calls and calls[0].status == 400
    err = json.loads(calls[0].answer)["error"]
    assert err["type"] == "invalid_request_error"
    assert "exceeds the context window" in err["message"] and "> 8192 maximum" in err["message"]
    assert r.returncode != 0
    assert "exceeds the context window" in r.stdout + r.stderr
