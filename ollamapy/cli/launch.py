"""`ollamapy launch claude|codex [--model M] [--config] [-- ARGS]`: point a coding agent at this
server the way `ollama launch` does, then run it.

- Claude Code speaks Anthropic Messages (`/v1/messages`): it is configured through its
  environment (`ANTHROPIC_BASE_URL`, `ANTHROPIC_AUTH_TOKEN`, every model tier set to M), as
  Ollama's launcher does; `--config` writes the same variables into the `env` of
  `~/.claude/settings.json` so a plain `claude` uses this server too.
- Codex speaks OpenAI Responses (`/v1/responses`): a `[model_providers.ollamapy]` provider with
  `wire_api = "responses"` and `base_url = <server>/v1/` in `~/.codex/config.toml` (other
  content kept), and the profile file `~/.codex/ollamapy.config.toml` selecting it and M (Codex
  >= 0.134 profiles); it runs as `codex --profile ollamapy -c model_provider="ollamapy" -m M`.

Files are rewritten atomically and the previous version is kept as `<file>.bak`. If the agent
is not installed, the exact install command and the command to run are printed instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ollamapy.cli.common import fail
from ollamapy.config import client_host
from ollamapy.inference.jsontypes import JsonObject

PROFILE = "ollamapy"


@dataclass(frozen=True)
class Agent:
    name: str  # what the user types
    title: str
    binary: str
    package: str  # npm package


AGENTS = {
    "claude": Agent("claude", "Claude Code", "claude", "@anthropic-ai/claude-code"),
    "codex": Agent("codex", "Codex", "codex", "@openai/codex"),
}


# ------------------------------------------------------------------ pure parts


def server_url(ollama_host: str | None) -> str:
    """The server's base URL as a client reaches it (OLLAMA_HOST, loopback for 0.0.0.0)."""
    return client_host(ollama_host).url.rstrip("/")


def claude_env(base_url: str, model: str, token: str) -> dict[str, str]:
    """Claude Code's environment for this server: Ollama's launcher's variables."""
    env = {
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "",  # else Claude Code prefers a real Anthropic key
        "ANTHROPIC_AUTH_TOKEN": token,
        "CLAUDE_CODE_ATTRIBUTION_HEADER": "0",
        "CLAUDE_CODE_TOTAL_TOKENS_REMINDER": "off",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_FEEDBACK_COMMAND": "1",
        "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
    }
    if model:
        for var in ("ANTHROPIC_DEFAULT_OPUS_MODEL", "ANTHROPIC_DEFAULT_SONNET_MODEL",
                    "ANTHROPIC_DEFAULT_HAIKU_MODEL", "CLAUDE_CODE_SUBAGENT_MODEL"):
            env[var] = model
    return env


def claude_args(model: str, extra: Sequence[str]) -> list[str]:
    return (["--model", model] if model else []) + list(extra)


def claude_settings(text: str, env: Mapping[str, str]) -> str:
    """`~/.claude/settings.json` with `env` merged in (every other key kept)."""
    data: Any = json.loads(text) if text.strip() else {}
    if not isinstance(data, dict):
        raise ValueError("settings.json is not a JSON object")
    merged = dict(data.get("env") or {})
    merged.update(env)
    data["env"] = merged
    return json.dumps(data, indent=2) + "\n"


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def codex_provider(base_url: str, key_env: str | None) -> list[str]:
    """The `[model_providers.ollamapy]` table: Codex reads providers from config.toml."""
    lines = [f"name = {_toml_str('ollamapy')}",
             f"base_url = {_toml_str(base_url + '/v1/')}",
             'wire_api = "responses"']
    if key_env:  # an API-key server: Codex sends $OLLAMA_API_KEY as the bearer token
        lines.append(f"env_key = {_toml_str(key_env)}")
    return lines


def codex_profile(model: str, catalog: Path | None = None) -> str:
    """`~/.codex/ollamapy.config.toml`: since Codex 0.134 a profile is its own file of
    top-level keys layered over config.toml (`[profiles.x]` tables are no longer read).
    `model_catalog_json` points Codex at the model's metadata (context window), as Ollama's
    launcher does; `web_search = "disabled"` because Codex otherwise declares its hosted
    `web_search` tool on every request, which a local server cannot run (refused with 400)."""
    lines = [f"model = {_toml_str(model)}"] if model else []
    lines.append(f"model_provider = {_toml_str(PROFILE)}")
    if catalog is not None:
        lines.append(f"model_catalog_json = {_toml_str(str(catalog))}")
    lines.append('web_search = "disabled"')
    return "\n".join(lines) + "\n"


CODEX_FALLBACK_WINDOW = 128_000  # Ollama's launcher's fallback when nothing is known


def context_window(show: Mapping[str, Any] | None, env_ctx: str | None) -> int:
    """The context the server runs the model with, best known from the client side: the
    model's own `num_ctx` PARAMETER, else OLLAMA_CONTEXT_LENGTH (the server's default, when
    set in this environment too), else the model's trained length, else Ollama's fallback."""
    show = show or {}
    for line in str(show.get("parameters") or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "num_ctx" and parts[1].isdigit():
            return int(parts[1])
    if env_ctx and env_ctx.strip().isdigit() and int(env_ctx) > 0:
        return int(env_ctx)
    info = show.get("model_info") or {}
    if isinstance(info, dict):
        for k, v in info.items():
            if k.endswith(".context_length") and isinstance(v, int) and v > 0:
                return v
    return CODEX_FALLBACK_WINDOW


def codex_catalog(model: str, window: int, vision: bool) -> JsonObject:
    """`~/.codex/model.json`: Codex's model catalogue with this one model (Ollama's launcher's
    entry), so Codex knows its context window instead of guessing fallback metadata."""
    return {"models": [{
        "slug": model, "display_name": model, "context_window": window,
        "shell_type": "default", "visibility": "list", "supported_in_api": True,
        "priority": 0, "truncation_policy": {"mode": "bytes", "limit": 10000},
        "input_modalities": ["text", "image"] if vision else ["text"],
        "base_instructions": "", "support_verbosity": True, "default_verbosity": "low",
        "supports_parallel_tool_calls": False, "supports_reasoning_summaries": False,
        "supported_reasoning_levels": [], "experimental_supported_tools": []}]}


def _is_header(line: str) -> bool:
    s = line.strip()
    return s.startswith("[") and not s.startswith("#")


def upsert_section(text: str, header: str, lines: Sequence[str]) -> str:
    """Replace the TOML table `header` (up to the next table header) or append it."""
    block = "\n".join([header, *lines]) + "\n"
    src = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(src) if ln.strip() == header), None)
    if start is None:
        if text and not text.endswith("\n"):
            text += "\n"
        return text + ("\n" if text else "") + block
    end = next((i for i in range(start + 1, len(src)) if _is_header(src[i])), len(src))
    tail = "".join(src[end:])
    return "".join(src[:start]) + block + ("\n" + tail if tail else "")


def codex_config(text: str, base_url: str, key_env: str | None) -> str:
    """`~/.codex/config.toml` with the ollamapy provider set, everything else kept. Raises
    tomllib.TOMLDecodeError for a file we could not read back (never overwritten then)."""
    tomllib.loads(text)
    text = upsert_section(text, f"[model_providers.{PROFILE}]", codex_provider(base_url, key_env))
    prov = tomllib.loads(text).get("model_providers", {}).get(PROFILE, {})
    if prov.get("wire_api") != "responses" or prov.get("base_url") != base_url + "/v1/":
        raise ValueError("could not write the ollamapy provider into config.toml")
    return text


def codex_args(model: str, extra: Sequence[str]) -> list[str]:
    """Profile plus the same selection as `-c` overrides (as Ollama's launcher passes them), so
    the run uses this server even if a profile file is not read."""
    args = ["--profile", PROFILE, "-c", f"model_provider={_toml_str(PROFILE)}"]
    return args + (["-m", model] if model else []) + list(extra)


def install_hint(agent: Agent, model: str) -> str:
    run = f"ollamapy launch {agent.name}" + (f" --model {model}" if model else "")
    return (f"{agent.title} is not installed. Install it with:\n"
            f"  npm install -g {agent.package}\n"
            f"then run:\n  {run}")


# ------------------------------------------------------------------ shell


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        shutil.copy2(path, path.with_name(path.name + ".bak"))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def find_binary(agent: Agent, home: Path) -> str | None:
    found = shutil.which(agent.binary)
    if found:
        return found
    if agent.name == "claude":  # the native installer's places (Ollama looks there too)
        for p in (home / ".local" / "bin" / "claude", home / ".claude" / "local" / "claude"):
            if p.is_file() and os.access(p, os.X_OK):
                return str(p)
    return None


def show_model(model: str) -> JsonObject | None:
    """`/api/show` for the model, or None when the server cannot say (not running, unknown)."""
    from ollamapy.cli.client import Client, ClientError

    try:
        with Client(timeout=5.0) as c:
            body = c.request("POST", "/api/show", {"model": model})
    except ClientError:
        return None
    return body if isinstance(body, dict) else None


def default_model() -> str:
    """The most recently modified model on the server (`ollamapy list`'s first row)."""
    from ollamapy.cli.client import Client, ClientError

    try:
        with Client(timeout=5.0) as c:
            body = c.request("GET", "/api/tags")
    except ClientError as e:
        fail(f"{e.message}; or pass --model NAME")
    models = body.get("models") if isinstance(body, dict) else None
    if not models:
        fail("no models on the server: pull one (`ollamapy pull NAME`) or pass --model NAME")
    name = models[0].get("name") or models[0].get("model")
    if not isinstance(name, str):
        fail("unexpected answer to /api/tags; pass --model NAME")
    return name


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("agent", type=click.Choice(sorted(AGENTS)))
@click.option("--model", "-m", default="", help="Model the agent uses (default: the newest)")
@click.option("--config", "config_only", is_flag=True,
              help="Only write the agent's configuration, do not run it")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def launch(agent: str, model: str, config_only: bool, args: tuple[str, ...]) -> None:
    """Set up a coding agent (claude, codex) for this server and run it"""
    a = AGENTS[agent]
    home = Path.home()
    url = server_url(os.environ.get("OLLAMA_HOST"))
    key = os.environ.get("OLLAMA_API_KEY", "").strip()
    model = model or default_model()
    if a.name == "claude":
        env = claude_env(url, model, key or "ollama")
        if config_only:
            path = home / ".claude" / "settings.json"
            try:
                text = claude_settings(path.read_text() if path.exists() else "", env)
            except ValueError as e:
                fail(f"{path}: {e}")
            write_atomic(path, text)
            click.echo(f"Wrote {path}: Claude Code uses {url} with model {model}")
            return
        argv = claude_args(model, args)
    else:
        path = home / ".codex" / "config.toml"
        try:
            text = codex_config(path.read_text() if path.exists() else "", url,
                                "OLLAMA_API_KEY" if key else None)
        except (tomllib.TOMLDecodeError, ValueError) as e:
            fail(f"{path}: {e}; fix it or move it away")
        write_atomic(path, text)
        show = show_model(model)
        catalog = home / ".codex" / "model.json"
        vision = "vision" in ((show or {}).get("capabilities") or [])
        window = context_window(show, os.environ.get("OLLAMA_CONTEXT_LENGTH"))
        write_atomic(catalog, json.dumps(codex_catalog(model, window, vision), indent=2) + "\n")
        profile = home / ".codex" / f"{PROFILE}.config.toml"
        write_atomic(profile, codex_profile(model, catalog))
        if config_only:
            click.echo(f"Wrote {path} (provider {PROFILE!r}: {url}/v1/, Responses API), "
                       f"{profile} (model {model}) and {catalog} (context window {window}); "
                       f"run `codex --profile {PROFILE}`")
            return
        env = {"OPENAI_API_KEY": key or "ollama"}
        argv = codex_args(model, args)
    binary = find_binary(a, home)
    if binary is None:
        click.echo(install_hint(a, model), err=True)
        sys.exit(1)
    try:
        rc = subprocess.call([binary, *argv], env={**os.environ, **env})
    except KeyboardInterrupt:
        rc = 130
    sys.exit(rc)
