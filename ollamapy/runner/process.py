"""One llama-server child: spawn, wait for /health, capture its log, stop, and never leak it.

The child gets PR_SET_PDEATHSIG(SIGKILL) (Linux) and its own process group, so it dies with the
server even when the server is SIGKILLed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import aiohttp

from ollamapy.errors import RunnerError
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.logs import kv
from ollamapy.runner.logpipe import LogPipe, log_pipe

log = logging.getLogger("ollamapy.runner")

STDERR_TAIL_LINES = 200
# Log fragments that name why llama-server failed (Ollama's llm/status.go uses the same idea).
CAUSE_MARKERS = ("error loading model", "GGML_ASSERT", "CUDA error", "cudaMalloc failed",
                 "failed to create_context", "couldn't bind HTTP server socket", "error:")
STOP_GRACE_S = 5.0

_PR_SET_PDEATHSIG = 1


_prctl: Callable[..., int] | None = None
if sys.platform.startswith("linux"):
    # Resolved once in the parent: the child, between fork and exec of a multi-threaded
    # server, must not dlopen or allocate (another thread may have held the malloc lock).
    with contextlib.suppress(OSError, AttributeError):
        _prctl = ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent(parent_pid: int) -> Callable[[], None]:
    """preexec_fn for a child that must die with the server (PR_SET_PDEATHSIG=SIGKILL).

    The parent's pid is captured before the fork: comparing `getppid()` with 1 instead would
    kill every runner of a server that *is* pid 1 (a container entrypoint), and miss a parent
    that died while a subreaper adopted the child."""
    sig = int(signal.SIGKILL)

    def preexec() -> None:  # runs in the child between fork and exec
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)

    return preexec


# What a runner may inherit. llama-server gets every setting as an explicit flag, so all it
# needs from the environment is what the dynamic loader and the GPU/threading libraries read:
# PATH/HOME/TMPDIR (CUDA's JIT cache lives under HOME, temporary files under TMPDIR), the
# loader path, and device selection/tuning for CUDA, ROCm/HIP (HSA_OVERRIDE_GFX_VERSION), Vulkan,
# SYCL, OpenMP and ggml itself. Everything else stays behind: the server's keys
# (OLLAMA_API_KEYS, OLLAMAPY_*_KEYS), cloud and CI credentials, and LLAMA_ARG_* / LLAMA_LOG_*,
# which would change flags (host, CORS, /slots) or the log format ollamapy parses.
RUNNER_ENV_NAMES = frozenset({
    "PATH", "HOME", "TMPDIR", "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "DYLD_FALLBACK_LIBRARY_PATH",
    "SYSTEMROOT", "GPU_DEVICE_ORDINAL", "ZES_ENABLE_SYSMAN", "ROCM_PATH", "HIP_PATH",
    "CUDA_PATH",
})
RUNNER_ENV_PREFIXES = ("CUDA_", "NVIDIA_", "HIP_", "ROCR_", "HSA_", "GGML_", "VK_", "SYCL_",
                       "ONEAPI_", "OMP_", "GOMP_", "KMP_")
# Refused even under an allowed prefix: a name that says it holds a secret is one.
_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSW", "CREDENTIAL", "AUTH")


def runner_env_allowed(name: str) -> bool:
    upper = name.upper()
    if any(w in upper for w in _SECRET_WORDS):
        return False
    return name in RUNNER_ENV_NAMES or name.startswith(RUNNER_ENV_PREFIXES)


def child_env(environ: Mapping[str, str], config_home: Path) -> dict[str, str]:
    """The child's environment: an allowlist of what llama.cpp and GPU libraries need, and our
    own config dir. The runner's API key is added by `RunnerProcess.start`."""
    env = {k: v for k, v in environ.items() if runner_env_allowed(k)}
    env["XDG_CONFIG_HOME"] = str(config_home)
    return env


def new_api_key() -> str:
    """A fresh random key per runner (256 bits, URL-safe so it is a valid header value)."""
    return secrets.token_urlsafe(32)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def is_bind_failure(stderr_tail: str) -> bool:
    return "couldn't bind HTTP server socket" in stderr_tail


_BUFFER = re.compile(r"\b([A-Za-z0-9_]+)\s+(model|KV|compute|output|RS|recurrent) buffer size"
                     r"\s*=\s*([0-9.]+) (MiB|KiB|GiB|B)\b")
_UNIT = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def parse_buffer_line(line: str) -> tuple[str, str, int] | None:
    """`CUDA0 model buffer size = 4403.49 MiB` -> ("CUDA0", "model", bytes); else None."""
    m = _BUFFER.search(line)
    if not m:
        return None
    return m.group(1), m.group(2), int(float(m.group(3)) * _UNIT[m.group(4)])


# Warnings llama-server prints in normal operation, e.g. for every request whose prompt is
# wholly in the cache: kept out of the default log (they are in the debug log).
ROUTINE_WARNINGS = ("need to evaluate at least 1 token", "n_past was set to")


def runner_line_level(line: str) -> int:
    """Server-log level for one llama-server line (`0.00.123.456 E msg`: E/W level letters):
    errors and warnings reach the default log, the chatty rest only the debug log. Runs on
    every line the runner prints: slices, no split or lowercasing of the whole line."""
    sp = line.find(" ")
    letter = (line[sp + 1] if sp > 0 and line[0].isdigit() and len(line) > sp + 1
              and line[sp + 2:sp + 3] in (" ", "") else "")
    head = line[:16].lower()
    if letter == "E" or head.startswith(("error", "terminate called")) or "GGML_ASSERT" in line:
        return logging.WARNING
    if letter == "W" or head.startswith("warning"):
        return logging.DEBUG if any(w in line for w in ROUTINE_WARNINGS) else logging.INFO
    return logging.DEBUG


def is_host_buffer(device: str) -> bool:
    """CPU*, *_Host and BLAS buffers live in system RAM; everything else is on a GPU."""
    d = device.upper()
    return d.startswith("CPU") or d.endswith("_HOST") or d == "BLAS"


def buffer_sizes(buffers: Mapping[tuple[str, str], int]) -> tuple[int, int]:
    """(total, vram) bytes from parsed buffer lines (Ollama's /api/ps size and size_vram)."""
    total = sum(buffers.values())
    vram = sum(v for (dev, _), v in buffers.items() if not is_host_buffer(dev))
    return total, vram


class RunnerProcess:
    """A started llama-server. Create with `await RunnerProcess.start(...)`."""

    def __init__(self, transport: asyncio.SubprocessTransport, pipe: LogPipe,
                 argv: Sequence[str], port: int, name: str,
                 on_line: Callable[[str], None] | None = None, *, api_key: str = "") -> None:
        self._transport = transport
        self._pipe = pipe
        # llama-server refuses every request but /health without it (Authorization: Bearer).
        self.api_key = api_key
        self.argv = list(argv)
        self.port = port
        self.name = name
        self.base_url = f"http://127.0.0.1:{port}"
        self.tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.lines_seen = 0
        self.buffers: dict[tuple[str, str], int] = {}
        self.props: JsonObject = {}  # its /props, read once it is healthy
        self._on_line = on_line
        self._listening = asyncio.Event()  # its log said it listens: poll /health now
        self._prefix = f"runner[{name}:{transport.get_pid()}]"
        pipe.attach(self._lines)

    @property
    def pid(self) -> int:
        return self._transport.get_pid()

    @property
    def returncode(self) -> int | None:
        return self._transport.get_returncode()

    @property
    def num_ctx(self) -> int:
        """Effective per-slot context from /props (0 when unknown)."""
        settings = self.props.get("default_generation_settings") or {}
        try:
            return int(settings.get("n_ctx") or 0)
        except (TypeError, ValueError, AttributeError):
            return 0

    def sizes(self) -> tuple[int, int]:
        """(total, vram) bytes of its buffers, parsed from its log (/api/ps)."""
        return buffer_sizes(self.buffers)

    async def wait(self) -> int:
        await asyncio.shield(self._pipe.exited)  # a cancelled waiter must not cancel the fact
        code = self.returncode
        assert code is not None
        return code

    @classmethod
    async def start(cls, binary: Path, args: Sequence[str], *, port: int, env: Mapping[str, str],
                    name: str, on_line: Callable[[str], None] | None = None) -> RunnerProcess:
        """Spawn it with a fresh API key. The key goes through the environment (LLAMA_API_KEY,
        which llama-server reads like --api-key): argv is readable by every local user, a
        process's environment only by its own user and root."""
        argv = [str(binary), *args, "--host", "127.0.0.1", "--port", str(port)]
        api_key = new_api_key()
        log.info("starting llama-server", extra={"kv": {"cmd": " ".join(argv)}})
        loop = asyncio.get_running_loop()
        r, w, batch = log_pipe()  # grown: a full pipe would stall llama-server (logpipe.py)
        try:
            transport, pipe = await loop.subprocess_exec(
                lambda: LogPipe(batch),
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=w,
                stderr=subprocess.STDOUT,
                env={**env, "LLAMA_API_KEY": api_key},
                preexec_fn=die_with_parent(os.getpid()),
                start_new_session=True,
            )
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        try:
            await pipe.read_from(r)
        except BaseException:  # cancelled (shutdown, the waiter left) as it started
            await asyncio.shield(_reap(transport, pipe))
            raise
        return cls(transport, pipe, argv, port, name, on_line, api_key=api_key)

    def _lines(self, raw: list[bytes]) -> None:
        """A batch of whole log lines from the child (LogPipe), in order."""
        for b in raw:
            line = b.decode("utf-8", "replace").rstrip()
            self.tail.append(line)
            self.lines_seen += 1
            if "buffer size" in line and "memory breakdown" not in line:
                buf = parse_buffer_line(line)
                if buf is not None:
                    self.buffers[(buf[0], buf[1])] = buf[2]  # the last report wins
            log.log(runner_line_level(line), "%s %s", self._prefix, line)
            if "listening on" in line:
                self._listening.set()
            if self._on_line is not None:
                self._on_line(line)

    def stderr_tail(self, lines: int = 20) -> str:
        return "\n".join(list(self.tail)[-lines:])

    def last_error(self) -> str:
        """The most telling line of the log for an error message.

        Like Ollama's StatusWriter: the latest line carrying a known cause marker wins, from the
        marker on (`error loading model: unknown model architecture: ...`); only without one do
        generic words such as `exiting` count."""
        for line in reversed(self.tail):
            for marker in CAUSE_MARKERS:
                idx = line.find(marker)
                if idx >= 0:
                    return line[idx:].strip()
        for line in reversed(self.tail):
            low = line.lower()
            if any(w in low for w in ("error", "failed", "exiting", "invalid", "unable")):
                return line.split(" ", 3)[-1].strip() if line[:1].isdigit() else line.strip()
        return self.tail[-1].strip() if self.tail else ""

    async def wait_ready(self, session: aiohttp.ClientSession, *, stall_timeout: float,
                         progress: Callable[[], float] | None = None, poll: float = 0.02) -> None:
        """Poll /health until 200 (every `poll` seconds, and at once when its log says it
        listens). 503 (loading) is normal; fail when the process exits, or when nothing has
        progressed for `stall_timeout` seconds (Ollama's stall rule)."""
        last_progress_at = time.monotonic()
        # Without a progress callback, each new log line counts as load progress.
        progress = progress or (lambda: float(self.lines_seen))
        last_progress = progress()
        url = f"{self.base_url}/health"
        while True:
            if self.returncode is not None:
                await self._drain()
                raise RunnerError(self.exit_message())
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        self._pipe.batch()  # loaded: its log is a trickle from now on
                        return
            except (TimeoutError, aiohttp.ClientError):
                pass
            now = time.monotonic()
            p = progress()
            if p != last_progress:
                last_progress, last_progress_at = p, now
            if stall_timeout > 0 and now - last_progress_at > stall_timeout:
                await self.stop()
                # Ollama: "... to start - <last error>"; the last log line says where it hung.
                detail = self.last_error() or "no output"
                raise RunnerError(f"timed out waiting for llama runner to start after "
                                  f"{stall_timeout:g}s without progress - {detail}")
            with contextlib.suppress(TimeoutError):  # `poll`, or less once it says it listens
                await asyncio.wait_for(self._listening.wait(), poll)
            self._listening.clear()

    def exit_message(self) -> str:
        code = self.returncode
        if code is not None and code >= 0:
            status = f"exit status {code}"
        else:
            status = f"signal {-(code or 0)}"
        detail = self.last_error()
        return f"llama runner process has terminated: {status}" + (f": {detail}" if detail else "")

    async def _drain(self) -> None:
        """The rest of the log of a child that has exited (its last lines say why)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._pipe.closed), 1.0)

    async def stop(self, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; always reaps the child."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._pipe.exited), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                await self.wait()
        await self._drain()
        self._pipe.close()  # if the child left the pipe open to a grandchild
        self._transport.close()


async def _reap(transport: asyncio.SubprocessTransport, pipe: LogPipe) -> None:
    """Kill a child whose start failed half-way and wait until it is reaped (no zombie)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(transport.get_pid(), signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(pipe.exited), STOP_GRACE_S)
    pipe.close()
    transport.close()


BIND_ATTEMPTS = 4


async def launch(binary: Path, args: Sequence[str], *, env: Mapping[str, str], name: str,
                 session: aiohttp.ClientSession, stall_timeout: float,
                 port_factory: Callable[[], int] = free_port,
                 attempts: int = BIND_ATTEMPTS) -> RunnerProcess:
    """Start llama-server and wait until /health is 200, retrying on another port when the
    chosen one was taken between picking it and the child binding it (exit 1, bind error).
    Cancellation (client gone, server shutting down) kills the child before re-raising."""
    for attempt in range(1, attempts + 1):
        proc = await RunnerProcess.start(binary, args, port=port_factory(), env=env, name=name)
        try:
            await proc.wait_ready(session, stall_timeout=stall_timeout)
            return proc
        except RunnerError:
            await asyncio.shield(proc.stop(grace=1.0))  # reaped even if cancelled meanwhile
            if attempt < attempts and is_bind_failure(proc.stderr_tail(50)):
                log.warning("runner port was taken, retrying on another", extra=kv(port=proc.port))
                continue
            raise
        except BaseException:
            await asyncio.shield(proc.stop(grace=0.5))
            raise
    raise AssertionError("unreachable")
