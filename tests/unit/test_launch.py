"""`ollamapy launch claude|codex`: the configuration written (temp HOME), the environment and
argv the agent runs with (a fake agent binary on PATH records them), and the install hint
when the agent is missing."""

from __future__ import annotations

import json
import stat
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from ollamapy.cli import launch as ln
from ollamapy.cli.main import cli


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no real agents
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0:11500")
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    return h


def fake_agent(tmp_path: Path, name: str, rc: int = 0) -> Path:
    """An agent stand-in that records its argv and environment, then exits with `rc`."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    out = tmp_path / f"{name}.json"
    script = bindir / name
    script.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                      f"json.dump({{'argv': sys.argv[1:], 'env': dict(os.environ)}}, "
                      f"open({str(out)!r}, 'w'))\nsys.exit({rc})\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return out


def invoke(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["launch", *args])
    return r.exit_code, r.stdout, r.stderr


def test_pure_parts() -> None:
    assert ln.server_url("0.0.0.0:11500") == "http://127.0.0.1:11500"
    env = ln.claude_env("http://h:1", "qwen3", "tok")
    assert env["ANTHROPIC_BASE_URL"] == "http://h:1" and env["ANTHROPIC_AUTH_TOKEN"] == "tok"
    assert env["ANTHROPIC_API_KEY"] == ""
    assert {env[k] for k in ("ANTHROPIC_DEFAULT_OPUS_MODEL", "ANTHROPIC_DEFAULT_SONNET_MODEL",
                             "ANTHROPIC_DEFAULT_HAIKU_MODEL", "CLAUDE_CODE_SUBAGENT_MODEL")
            } == {"qwen3"}
    text = ln.upsert_section('model = "gpt"\n\n[a]\nx = 1\n\n[b]\ny = 2\n', "[a]", ["x = 3"])
    assert tomllib.loads(text) == {"model": "gpt", "a": {"x": 3}, "b": {"y": 2}}
    assert tomllib.loads(ln.upsert_section("", "[c]", ['z = "q"'])) == {"c": {"z": "q"}}


def test_claude_runs_with_env(home: Path, tmp_path: Path) -> None:
    rec = fake_agent(tmp_path, "claude")
    rc, _, err = invoke("claude", "--model", "smollm2:135m", "--", "-p", "hello")
    assert rc == 0, err
    got = json.loads(rec.read_text())
    assert got["argv"] == ["--model", "smollm2:135m", "-p", "hello"]
    env = got["env"]
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:11500"
    assert env["ANTHROPIC_AUTH_TOKEN"] == "ollama" and env["ANTHROPIC_API_KEY"] == ""
    assert env["ANTHROPIC_DEFAULT_SONNET_MODEL"] == "smollm2:135m"
    assert not (home / ".claude").exists()  # running writes no configuration


def test_claude_api_key_and_exit_code(home: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", "sekrit")
    rec = fake_agent(tmp_path, "claude", rc=3)
    rc, _, _ = invoke("claude", "-m", "m1")
    assert rc == 3  # the agent's own exit status
    assert json.loads(rec.read_text())["env"]["ANTHROPIC_AUTH_TOKEN"] == "sekrit"


def test_claude_config_merges_settings(home: Path) -> None:
    settings = home / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps({"theme": "dark", "env": {"FOO": "1"}}))
    rc, out, err = invoke("claude", "--model", "m1", "--config")
    assert rc == 0, err
    assert "settings.json" in out
    data = json.loads(settings.read_text())
    assert data["theme"] == "dark" and data["env"]["FOO"] == "1"
    assert data["env"]["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:11500"
    assert data["env"]["ANTHROPIC_DEFAULT_OPUS_MODEL"] == "m1"
    assert json.loads((settings.parent / "settings.json.bak").read_text())["theme"] == "dark"


def test_codex_config_and_run(home: Path, tmp_path: Path) -> None:
    cfg = home / ".codex" / "config.toml"
    cfg.parent.mkdir()
    cfg.write_text('model = "gpt-5"\n\n[mcp_servers.x]\ncommand = "y"\n')
    rc, out, err = invoke("codex", "--model", "m1", "--config")
    assert "ollamapy.config.toml" in out
    assert rc == 0, err
    parsed = tomllib.loads(cfg.read_text())
    assert parsed["model"] == "gpt-5" and parsed["mcp_servers"]["x"]["command"] == "y"
    assert parsed["model_providers"]["ollamapy"] == {
        "name": "ollamapy", "base_url": "http://127.0.0.1:11500/v1/", "wire_api": "responses"}
    profile = tomllib.loads((home / ".codex" / "ollamapy.config.toml").read_text())
    catalog = home / ".codex" / "model.json"
    assert profile == {"model": "m1", "model_provider": "ollamapy",
                       "model_catalog_json": str(catalog), "web_search": "disabled"}
    entry = json.loads(catalog.read_text())["models"][0]
    # no server answers here: Ollama's launcher's fallback window
    assert entry["slug"] == "m1" and entry["context_window"] == ln.CODEX_FALLBACK_WINDOW
    assert entry["input_modalities"] == ["text"] and entry["base_instructions"] == ""
    # idempotent: a second run replaces the provider table, never duplicates it
    rc, _, _ = invoke("codex", "--model", "m2", "--config")
    assert rc == 0 and cfg.read_text().count("[model_providers.ollamapy]") == 1
    rec = fake_agent(tmp_path, "codex")
    rc, _, err = invoke("codex", "--model", "m2")
    assert rc == 0, err
    got = json.loads(rec.read_text())
    assert got["argv"] == ["--profile", "ollamapy", "-c", 'model_provider="ollamapy"',
                           "-m", "m2"]
    assert got["env"]["OPENAI_API_KEY"] == "ollama"


def test_codex_key_server_and_bad_toml(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", "k")
    rc, _, _ = invoke("codex", "-m", "m1", "--config")
    cfg = home / ".codex" / "config.toml"
    assert rc == 0
    assert tomllib.loads(cfg.read_text())["model_providers"]["ollamapy"]["env_key"] == (
        "OLLAMA_API_KEY")
    cfg.write_text("this is = = not toml")
    rc, _, err = invoke("codex", "-m", "m1", "--config")
    assert rc == 1 and "config.toml" in err
    assert cfg.read_text() == "this is = = not toml"  # never overwritten


@pytest.mark.parametrize("agent,package", [("claude", "@anthropic-ai/claude-code"),
                                           ("codex", "@openai/codex")])
def test_missing_agent_prints_install(home: Path, agent: str, package: str) -> None:
    rc, _, err = invoke(agent, "--model", "m1")
    assert rc == 1
    assert f"npm install -g {package}" in err
    assert f"ollamapy launch {agent} --model m1" in err


def test_listed_in_help() -> None:
    r = CliRunner().invoke(cli, ["--help"])
    assert "launch" in r.stdout


def test_context_window_sources() -> None:
    show = {"parameters": "num_thread                     1\nnum_ctx                        16384",
            "model_info": {"llama.context_length": 8192}}
    assert ln.context_window(show, "32768") == 16384  # the model's own num_ctx wins
    show["parameters"] = "stop \"<|im_end|>\""
    assert ln.context_window(show, "32768") == 32768  # then OLLAMA_CONTEXT_LENGTH
    assert ln.context_window(show, "0") == 8192  # then the trained length
    assert ln.context_window(None, None) == ln.CODEX_FALLBACK_WINDOW
    cat = ln.codex_catalog("m", 4096, vision=True)
    assert cat["models"][0]["context_window"] == 4096
    assert cat["models"][0]["input_modalities"] == ["text", "image"]
