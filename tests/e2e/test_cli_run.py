"""`ollamapy run` against a real `ollamapy serve` with SmolLM2: the REPL through a pseudo-terminal,
a piped prompt, --verbose. Output text is the model's, so assertions are about structure (an
answer arrived, the stats block is there) plus the exact strings ollamapy itself prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pexpect
import pytest

from tests.conftest import ServerProc

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "ollamapy.cli.main"]
SHORT = "smollm2-short:latest"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\r⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]")


@pytest.fixture
def short_model(model_server: ServerProc) -> Iterator[ServerProc]:
    """smollm2:135m with a small num_predict, so every answer is quick on a busy CPU."""
    r = httpx.post(model_server.url + "/api/create", timeout=60, json={
        "model": SHORT, "from": "smollm2:135m", "stream": False,
        "parameters": {"num_predict": 12, "num_ctx": 2048}})
    assert r.status_code == 200, r.text
    yield model_server


def env_for(server: ServerProc, home: Path) -> dict[str, str]:
    env = dict(os.environ, OLLAMA_HOST=server.host, HOME=str(home), TERM="xterm-256color")
    env.pop("OLLAMA_NOHISTORY", None)
    return env


def answer(p: pexpect.spawn) -> str:
    """Wait for the next prompt; the text printed before it, without escapes and spinners."""
    p.expect_exact(">>> ", timeout=120)
    return ANSI.sub("", p.before).strip()


@pytest.fixture
def repl(short_model: ServerProc, tmp_path: Path) -> Iterator[pexpect.spawn]:
    """`ollamapy run` in a pty, ended even when an expectation fails."""
    p = pexpect.spawn(CLI[0], [*CLI[1:], "run", SHORT], env=env_for(short_model, tmp_path),
                      encoding="utf-8", timeout=120, dimensions=(40, 200))
    yield p
    if p.isalive():
        p.close(force=True)


def test_repl_session(repl: pexpect.spawn, short_model: ServerProc, tmp_path: Path) -> None:
    p = repl
    answer(p)  # preloaded, prompt shown
    ps = httpx.get(short_model.url + "/api/ps", timeout=10).json()["models"]
    assert [m["name"] for m in ps] == [SHORT]  # the REPL preloads before the first prompt

    p.sendline("Name a colour.")
    first = answer(p)
    assert first.startswith("Name a colour.") and len(first) > len("Name a colour.")

    p.sendline("/set parameter temperature 0")
    assert answer(p).endswith("Set parameter 'temperature' to '0'")

    p.sendline('"""Count to three:')
    p.expect_exact("... ")
    p.sendline('one, two"""')
    multi = answer(p)
    assert "one, two" in multi and len(multi.split("one, two", 1)[1].strip()) > 0

    p.sendline("/show parameters")
    shown = answer(p)
    assert "Model defined parameters:" in shown
    assert re.search(r"num_predict +12", shown)
    assert re.search(r"User defined parameters:\s+temperature {20,}0", shown)

    p.sendline("/set verbose")
    answer(p)
    p.sendline("Hi")
    stats = answer(p)
    assert "total duration:" in stats and "eval count:" in stats and "eval rate:" in stats

    p.sendline("/set system You answer in one word.")
    assert answer(p).endswith("Set system message.")
    p.sendline("/save mysession")
    assert answer(p).endswith("Created new model 'mysession'")
    saved = httpx.post(short_model.url + "/api/show", json={"model": "mysession"},
                       timeout=30).json()
    assert saved["system"] == "You answer in one word."
    assert re.search(r"temperature +0", saved["parameters"])
    p.sendline("/load mysession")
    assert answer(p).endswith("Loading model 'mysession'")
    p.sendline("/show system")
    assert "You answer in one word." in answer(p)
    p.sendline("/load nosuchmodel")
    assert answer(p).endswith("Couldn't find model 'nosuchmodel'")

    p.sendline("/bye")
    p.expect(pexpect.EOF, timeout=30)
    p.close()
    assert p.exitstatus == 0
    assert "Name a colour." in (tmp_path / ".ollama" / "history").read_text()


def test_piped_prompt_prints_an_answer(short_model: ServerProc, tmp_path: Path) -> None:
    r = subprocess.run(f"echo hi | {CLI[0]} -m ollamapy.cli.main run {SHORT}", shell=True,
                       env=env_for(short_model, tmp_path), capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("\n\n") and r.stdout.strip()
    assert "\x1b" not in r.stdout  # not a terminal: plain text, no wrap escapes


def test_verbose_prints_the_stats_block(short_model: ServerProc, tmp_path: Path) -> None:
    r = subprocess.run([*CLI, "run", SHORT, "--verbose", "Say hello"],
                       env=env_for(short_model, tmp_path), capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    lines = r.stderr.splitlines()
    labels = [ln.split(":")[0] for ln in lines if ":" in ln]
    assert labels[0] == "total duration"
    for label in ("prompt eval count", "prompt eval rate", "eval count", "eval duration",
                  "eval rate"):
        assert label in labels, r.stderr
    assert re.search(r"^eval count: {11}\d+ token\(s\)$", r.stderr, re.M)
    assert re.search(r"^eval rate: {12}\d+\.\d\d tokens/s$", r.stderr, re.M)


def test_unknown_model_and_bad_flags(model_server: ServerProc, tmp_path: Path) -> None:
    env = env_for(model_server, tmp_path)
    r = subprocess.run([*CLI, "run", "smollm2:135m", "--format", "yaml", "hi"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "invalid format" in r.stderr
    r = subprocess.run([*CLI, "run", "bad name!", "hi"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("Error: ")
