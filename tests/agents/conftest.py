"""The slow agents suite (`make test-agents`, not part of `make test`): the real Claude Code and
Codex CLI, installed with npm into a version-pinned cache directory, run non-interactively
against a real `ollamapy serve` (SmolLM2 on the cpu runner) through a recording proxy, configured
by `ollamapy launch ... --config` in a temporary HOME.

Pins: the agent versions this suite was written against; bump them deliberately (their request
shapes change between releases, which is what the suite is for)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ollamapy import default_model
from tests.agents.recorder import RecordingProxy
from tests.conftest import FAST_PARAMS, ServerProc, register_default_model, running_server

CLAUDE_CODE = ("@anthropic-ai/claude-code", "2.1.332", "claude")
CODEX = ("@openai/codex", "0.171.0", "codex")
TOOLS_MODEL = "smollm2-tools"
# SmolLM2 was trained with 8192 tokens; the server never runs it with more (as Ollama caps
# num_ctx at the trained length), so this is the most an agent can get from it.
AGENT_CTX = "8192"
TEMPLATES = Path(__file__).resolve().parent.parent / "unit" / "templates"
MAX_ANSWER = 48  # tokens: a 135M model's answer to "say hi" needs no more


def agents_cache() -> Path:
    return default_model.cache_dir() / "agents"


def install(package: str, version: str, binary: str) -> Path:
    """`npm install` the pinned agent into ~/.cache/ollamapy/agents/<name>-<version> once."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the agents suite needs Node.js and npm to install "
                    f"{package}@{version}")
    dest = agents_cache() / f"{package.split('/')[-1]}-{version}"
    exe = dest / "node_modules" / ".bin" / binary
    if exe.exists():
        return exe
    dest.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(dest),
                        f"{package}@{version}"], capture_output=True, text=True, timeout=900)
    if r.returncode != 0 or not exe.exists():
        shutil.rmtree(dest, ignore_errors=True)  # never leave a half install to be reused
        pytest.skip(f"npm install {package}@{version} failed (no registry access?):\n"
                    f"{r.stderr[-2000:]}")
    return exe


def register_tools_model(models: Path) -> None:
    """SmolLM2 with a ChatML template that declares tools (Ollama's qwen2.5 template, as in
    the SDK e2e tests): the GGUF's own template has none, and agents always send tools.
    `num_predict` and a stop at the first line end bound the answers of agents that send no
    output limit (Codex): a 135M model otherwise rambles for minutes on a busy CPU."""
    from ollamapy.store.create import CreateSpec, create_model
    from ollamapy.store.names import ModelName
    from ollamapy.store.store import ModelStore

    register_default_model(models, params=FAST_PARAMS)
    create_model(ModelStore(models), ModelName.parse(TOOLS_MODEL), CreateSpec(
        from_="smollm2:135m", template=(TEMPLATES / "qwen2.5.gotmpl").read_text(),
        parameters={**FAST_PARAMS, "num_predict": MAX_ANSWER, "stop": ["\n"]}), lambda _p: None)


@dataclass
class AgentServer:
    server: ServerProc
    proxy: RecordingProxy
    home: Path
    work: Path

    def host(self) -> str:
        return self.proxy.url.removeprefix("http://")

    def launch_config(self, agent: str, model: str = TOOLS_MODEL) -> str:
        """`ollamapy launch AGENT --config` in the temp HOME, pointed at the proxy."""
        env = {**os.environ, "HOME": str(self.home), "OLLAMA_HOST": self.host(),
               "OLLAMA_CONTEXT_LENGTH": AGENT_CTX}
        r = subprocess.run([sys.executable, "-m", "ollamapy.cli.main", "launch", agent,
                            "--model", model, "--config"], env=env, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout


@pytest.fixture(scope="module")
def agent_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentServer]:
    tmp = tmp_path_factory.mktemp("agents")
    register_tools_model(tmp / "models")
    env = {"OLLAMA_CONTEXT_LENGTH": AGENT_CTX, "OLLAMA_NUM_PARALLEL": "1"}
    with running_server(tmp, env, model=False) as s, RecordingProxy(s.url) as proxy:
        home, work = tmp / "agent-home", tmp / "project"
        home.mkdir()
        work.mkdir()
        yield AgentServer(s, proxy, home, work)


def run_agent(argv: list[str], srv: AgentServer, env: dict[str, str],
              timeout: float) -> subprocess.CompletedProcess[str]:
    """The agent non-interactively: temp HOME, project dir as cwd, no stdin, loopback only."""
    full = {**os.environ, "HOME": str(srv.home), **env}
    return subprocess.run(argv, cwd=srv.work, env=full, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)
