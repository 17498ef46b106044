"""`ollamapy run` in a real pseudo-terminal against a scripted Ollama API (tests/e2e/fake_ollama):
REPL commands, Ctrl+C/Ctrl+D, thinking display, pull progress, --verbose, piped stdin, errors.
The same CLI against a real `ollamapy serve` + SmolLM2 is in test_cli_run.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.e2e.fake_ollama import FakeState, fake_server

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "ollamapy.cli.main"]


@pytest.fixture
def fake() -> Iterator[tuple[str, FakeState]]:
    with fake_server() as f:
        yield f


def env_for(host: str, home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, OLLAMA_HOST=host, HOME=str(home), TERM="xterm-256color")
    env.pop("OLLAMA_NOHISTORY", None)
    env.update(extra)
    return env


SPAWNED: list[pexpect.spawn] = []


@pytest.fixture(autouse=True)
def close_spawned() -> Iterator[None]:
    """A failed expect leaves its CLI running: end every spawned child after each test."""
    yield
    while SPAWNED:
        p = SPAWNED.pop()
        if p.isalive():
            p.close(force=True)


def spawn(args: list[str], env: dict[str, str]) -> pexpect.spawn:
    p = pexpect.spawn(CLI[0], [*CLI[1:], *args], env=env, encoding="utf-8", timeout=20,
                      dimensions=(40, 200))
    SPAWNED.append(p)
    return p


def run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, input=stdin, capture_output=True, text=True,
                          timeout=30)


def test_repl_session(fake: tuple[str, FakeState], tmp_path: Path) -> None:
    host, state = fake
    p = spawn(["run", "smollm2:135m"], env_for(host, tmp_path))
    p.expect_exact(">>> ")
    assert state.bodies("/api/generate")[0] == {"model": "smollm2:135m"}  # preload
    p.sendline("hello there")
    p.expect_exact("Echo(1): hello there")
    p.expect_exact(">>> ")
    p.sendline("/set parameter temperature 0")
    p.expect_exact("Set parameter 'temperature' to '0'")
    p.expect_exact(">>> ")
    p.sendline('"""first line')
    p.expect_exact("... ")
    p.sendline('second line"""')
    p.expect_exact("Echo(3): first line")
    p.expect_exact(">>> ")
    last = state.bodies("/api/chat")[-1]
    assert last["messages"][-1] == {"role": "user", "content": "first line\nsecond line"}
    assert last["messages"][1]["role"] == "assistant"
    assert last["options"] == {"temperature": 0}
    p.sendline("/show parameters")
    p.expect_exact("Model defined parameters:")
    p.expect_exact('stop "<|im_end|>"')
    p.expect_exact("User defined parameters:")
    p.expect(r"temperature {20,}0")
    p.expect_exact(">>> ")
    p.sendline("/set verbose")
    p.expect_exact("Set 'verbose' mode.")
    p.sendline("count")
    p.expect_exact("total duration:       1.234567891s")
    p.expect_exact("eval rate:            62.18 tokens/s")
    p.expect_exact(">>> ")
    p.sendline("/bye")
    p.expect(pexpect.EOF)
    p.close()
    assert p.exitstatus == 0
    history = (tmp_path / ".ollama" / "history").read_text()
    assert "hello there" in history and "/bye" in history


def test_ctrl_c_cancels_the_answer_and_ctrl_d_exits(fake: tuple[str, FakeState],
                                                      tmp_path: Path) -> None:
    host, state = fake
    p = spawn(["run", "smollm2:135m"], env_for(host, tmp_path, OLLAMA_NOHISTORY="1"))
    p.expect_exact(">>> ")
    p.sendline("go slow please")
    p.expect_exact("tick tick")
    p.sendintr()
    p.expect_exact(">>> ", timeout=5)
    assert state.cancelled.wait(5), "the server never saw the stream closed"
    p.sendintr()  # Ctrl+C on an empty prompt only reminds how to leave
    p.expect_exact("Use Ctrl + d or /bye to exit.")
    p.expect_exact(">>> ")
    p.sendline("after cancel")
    p.expect_exact("Echo(2): after cancel")  # the cancelled turn left only the user message
    p.expect_exact(">>> ")
    p.sendeof()
    p.expect(pexpect.EOF)
    p.close()
    assert p.exitstatus == 0
    assert not (tmp_path / ".ollama" / "history").exists()


def test_thinking_shown_and_hidden(fake: tuple[str, FakeState], tmp_path: Path) -> None:
    host, state = fake
    r = run(["run", "thinker:1b", "why?"], env_for(host, tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Thinking...\npondering\n...done thinking.\n\nYou asked: why? \n\n"
    assert state.bodies("/api/generate")[-1]["think"] is True  # inferred from capabilities
    r = run(["run", "thinker:1b", "--hidethinking", "why?"], env_for(host, tmp_path))
    assert r.stdout == "You asked: why? \n\n"
    r = run(["run", "thinker:1b", "--think=false", "why?"], env_for(host, tmp_path))
    assert state.bodies("/api/generate")[-1]["think"] is False
    assert "Thinking" not in r.stdout


def test_repl_thinking_colored(fake: tuple[str, FakeState], tmp_path: Path) -> None:
    host, _ = fake
    p = spawn(["run", "thinker:1b"], env_for(host, tmp_path))
    p.expect_exact(">>> ")
    p.sendline("hi")
    p.expect_exact("Thinking...")
    p.expect_exact("Let me see.")
    p.expect_exact("...done thinking.")
    p.expect_exact("Echo(1): hi")
    p.expect_exact(">>> ")
    p.sendline("/bye")
    p.expect(pexpect.EOF)


def test_pull_missing_model_with_progress(fake: tuple[str, FakeState], tmp_path: Path) -> None:
    host, state = fake
    r = run(["run", "pullme:1b", "hi"], env_for(host, tmp_path))
    assert r.returncode == 0, r.stderr
    assert "pulling manifest" in r.stderr and "success" in r.stderr
    assert "pulling 5a5a5a5a5a5a: 100%" in r.stderr
    assert r.stdout == "You asked: hi \n\n"
    assert state.bodies("/api/pull")[0]["model"] == "pullme:1b"
    r = run(["run", "nowhere:1b", "hi"], env_for(host, tmp_path))
    assert r.returncode == 1
    assert r.stderr.endswith("Error: pull model manifest: file does not exist\n")


def test_piped_stdin_flags_and_verbose(fake: tuple[str, FakeState], tmp_path: Path) -> None:
    host, state = fake
    r = run(["run", "smollm2:135m", "--verbose", "--format", "json", "--keepalive", "10m",
             "and more"], env_for(host, tmp_path), stdin="from stdin")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "You asked: from stdin and more \n\n"
    body = state.bodies("/api/generate")[-1]
    assert body["prompt"] == "from stdin and more"
    assert body["format"] == "json" and body["keep_alive"] == "10m"
    assert "prompt eval count:    26 token(s)\n" in r.stderr
    assert "prompt eval rate:     200.00 tokens/s\n" in r.stderr


def test_errors(fake: tuple[str, FakeState], tmp_path: Path) -> None:
    host, _ = fake
    r = run(["run", "smollm2:135m", "--keepalive", "soon", "x"], env_for(host, tmp_path))
    assert r.returncode != 0 and 'invalid duration "soon"' in r.stderr
    r = run(["run", "smollm2:135m", "--think=maybe", "x"], env_for(host, tmp_path))
    assert r.returncode != 0 and "invalid value for --think" in r.stderr
    r = run(["run", "smollm2:135m", "x"], env_for("127.0.0.1:9", tmp_path))
    assert r.returncode == 1
    assert r.stderr == ("Error: could not connect to ollamapy server, run 'ollamapy serve' "
                        "to start it\n")
    r = run(["-v"], env_for(host, tmp_path))
    assert r.stdout.startswith("ollamapy version is 9.9.9 (llama.cpp ")
    assert "Warning: client version is" in r.stdout


def test_repl_load_show_save_list(fake: tuple[str, FakeState], tmp_path: Path) -> None:
    host, state = fake
    p = spawn(["run", "smollm2:135m"], env_for(host, tmp_path))
    p.expect_exact(">>> ")
    p.sendline("/show info")
    p.expect(r"architecture +llama")
    p.expect(r"context length +8192")
    p.expect_exact(">>> ")
    p.sendline("/load nosuch:1b")
    p.expect_exact("Couldn't find model 'nosuch:1b'")
    p.sendline("/set system Be brief.")
    p.expect_exact("Set system message.")
    p.sendline("/save mine:1")
    p.expect_exact("Created new model 'mine:1'")
    assert state.bodies("/api/create")[-1] == {
        "model": "mine:1", "from": "smollm2:135m", "stream": False, "system": "Be brief.",
        "messages": [{"role": "system", "content": "Be brief."}]}
    p.sendline("/list")
    p.expect(r"NAME +ID +SIZE +MODIFIED")
    p.expect_exact("mine:1")
    p.sendline("/bye")
    p.expect(pexpect.EOF)


def test_bracketed_paste_is_one_message(fake: tuple[str, FakeState], tmp_path: Path) -> None:
    host, state = fake
    p = spawn(["run", "smollm2:135m"], env_for(host, tmp_path, OLLAMA_NOHISTORY="1"))
    p.expect_exact(">>> ")
    p.send("\x1b[200~pasted one\npasted two\x1b[201~")
    p.send("\r")
    p.expect_exact("Echo(1): pasted one")
    p.expect_exact(">>> ")
    assert state.bodies("/api/chat")[-1]["messages"] == [
        {"role": "user", "content": "pasted one\npasted two"}]
    p.sendline("/bye")
    p.expect(pexpect.EOF)
