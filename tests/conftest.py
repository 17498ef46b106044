"""Shared fixtures: the built cpu runner, the SmolLM2 test model, a running ollamapy server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ollamapy import default_model
from ollamapy.runner.locate import find_runners

REPO = Path(__file__).resolve().parent.parent
# watchdog: async tests fail when a loop callback blocks > 100 ms; netns: the `netns` fixture (a
# network namespace + veth pair that remote-access tests run their clients in).
pytest_plugins = ["tests.watchdog", "tests.netns"]


def need(what: str, how: str) -> None:
    # Under CI a missing prerequisite is a failure, never a skip: `make test` installs it.
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing; `{how}` should have provided it")
    pytest.skip(f"{what} is missing; run `{how}`")


@pytest.fixture(scope="session")
def runner_binary() -> Path:
    for r in find_runners():
        if r.variant == "cpu":
            return r.binary
    need("the cpu llama-server runner", "make runner-test")
    raise AssertionError


@pytest.fixture(scope="session")
def model_path() -> Path:
    p = default_model.model_path()
    if not p.exists():
        need("the SmolLM2 test model", "make model")
    return p


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """Gemma 3 270M (the families' second test model), fetched by `make gemma-file`."""
    from ollamapy import gemma_model

    p = gemma_model.model_path()
    if not p.exists():
        need("Gemma 3 270M", "make gemma-file")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProc:
    proc: subprocess.Popen
    url: str
    host: str
    models_dir: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(tmp_path: Path, env_extra: dict[str, str] | None = None,
                 host: str | None = None) -> ServerProc:
    port = free_port()
    models = tmp_path / "models"
    env = dict(os.environ)
    env.update({
        "OLLAMA_HOST": host or f"127.0.0.1:{port}",
        "OLLAMA_MODELS": str(models),
        "HOME": str(tmp_path / "home"),
        "OLLAMAPY_CACHE": str(default_model.cache_dir()),
    })
    env.update(env_extra or {})
    (tmp_path / "home").mkdir(exist_ok=True)
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as logf:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "ollamapy.cli.main", "serve"], env=env,
                                stdout=logf, stderr=subprocess.STDOUT)
    hp = env["OLLAMA_HOST"]
    url = f"http://{hp}" if "://" not in hp else hp
    url = url.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]")  # probe on loopback
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(url + "/", timeout=1, headers=_probe_headers(env)).status_code == 200:
                return ServerProc(proc, url, hp, models, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    proc.wait()  # reaped: no zombie, and its runners get their parent-death signal
    raise AssertionError(f"server did not answer:\n{log_path.read_text()}")


def _probe_headers(env: dict[str, str]) -> dict[str, str]:
    """The readiness probe authenticates like any client when the server requires API keys."""
    keys = [k.strip() for k in env.get("OLLAMA_API_KEYS", "").split(",") if k.strip()]
    return {"Authorization": f"Bearer {keys[0]}"} if keys else {}


def stop_server(s: ServerProc) -> int:
    if s.proc.poll() is None:
        s.proc.terminate()
        try:
            s.proc.wait(15)
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait()
    return s.proc.returncode


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProc]:
    s = start_server(tmp_path)
    yield s
    stop_server(s)


DEFAULT_MODEL = "smollm2:135m"


# llama.cpp's worker threads spin-wait at barriers, so with its default of one thread per core a
# runner sharing a 2-core machine with anything else decodes 5-20x slower (measured here: 30
# tokens in 2.2 s vs 0.4 s with one thread; 11.8 s vs 0.55 s beside one busy process). Test
# models carry `num_thread 1` as a model parameter so every request, load-only ones included,
# gets the same runner options (no reloads) and e2e tests stay fast on a busy machine.
FAST_PARAMS: dict[str, object] = {"num_thread": 1}


def register_default_model(models_dir: Path, name: str = DEFAULT_MODEL,
                           params: dict[str, object] | None = None) -> str:
    """Register the SmolLM2 GGUF as `name` in a store (through the store's create code; the blob
    is hard-linked from the cache when possible). Usable before starting a server with custom env.
    `params` become the model's PARAMETERs (e.g. FAST_PARAMS). Returns the display name."""
    from ollamapy import pins
    from ollamapy.store.register import register_gguf

    src = default_model.model_path()
    if not src.exists():
        need("the SmolLM2 test model", "make model")
    shown = register_gguf(models_dir, src, name,
                          digest="sha256:" + pins.default_model().gguf_sha256)
    if params:
        from ollamapy.store.create import CreateSpec, create_model
        from ollamapy.store.names import ModelName
        from ollamapy.store.store import ModelStore

        create_model(ModelStore(models_dir), ModelName.parse(name),
                     CreateSpec(from_=name, parameters=dict(params)), lambda _p: None)
    return shown


@pytest.fixture
def model_server(tmp_path: Path) -> Iterator[ServerProc]:
    """A running `ollamapy serve` whose store already holds smollm2:135m (with FAST_PARAMS)."""
    register_default_model(tmp_path / "models", params=FAST_PARAMS)
    s = start_server(tmp_path)
    yield s
    stop_server(s)


@contextmanager
def running_server(tmp: Path, env: dict[str, str] | None = None, *, model: bool = True,
                   params: dict[str, object] | None = None) -> Iterator[ServerProc]:
    """`ollamapy serve` on a fresh store under `tmp` (holding smollm2:135m unless `model` is
    False; `params` become its PARAMETERs), stopped on exit. The one recipe behind every e2e
    module's server fixture."""
    if model:
        register_default_model(tmp / "models", params=params)
    s = start_server(tmp, env)
    try:
        yield s
    finally:
        stop_server(s)


INFERENCE_ENV = {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_CONTEXT_LENGTH": "2048"}


@pytest.fixture(scope="module")
def inference_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """One server per module for the inference e2e tests: smollm2:135m with FAST_PARAMS,
    one slot, 2048-token context."""
    with running_server(tmp_path_factory.mktemp("serve"), INFERENCE_ENV,
                        params=FAST_PARAMS) as s:
        yield s
