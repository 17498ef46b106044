"""`ollamapy worker`: keep one ggml-rpc-server alive, the way serve keeps its runners.

The child dies with us (PR_SET_PDEATHSIG via runner.process.die_with_parent, own process group),
its output is logged line by line with a `worker[host:port:pid]` prefix, it is health-checked
(TCP connect + the RPC HELLO and device query) and restarted with backoff when it exits or stops
answering. A probe that connects but gets no HELLO back means the server is busy with a client
(it serves one at a time): that is healthy.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import resource
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ollamapy.placement.rpc import WorkerInfo, hello
from ollamapy.runner.process import die_with_parent
from ollamapy.worker.options import (
    WorkerOptions,
    backoff,
    data_limit,
    default_cache_dir,
    log_level_for,
    rpc_server_argv,
    rpc_server_env,
)

log = logging.getLogger("ollamapy.worker")

START_TIMEOUT_S = 60.0  # loading every backend module (CUDA init) can take a while
PROBE_INTERVAL_S = 10.0
PROBE_DEADLINE_S = 3.0
UNHEALTHY_PROBES = 3  # consecutive failed probes (not busy) before a restart
STABLE_AFTER_S = 60.0  # up this long: the next crash starts the backoff from 1 s again
STOP_GRACE_S = 5.0
BIND_FAILURE = "Failed to create server socket"  # rpc-server's message (it then exits 0)
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


class WorkerStartError(Exception):
    """The RPC server cannot start at all (bind failure): report it, do not retry forever."""


def _preexec(limit: int | None) -> Callable[[], None]:
    die = die_with_parent(os.getpid())

    def preexec() -> None:  # in the child, between fork and exec
        die()
        # rpc-server writes to client sockets with plain send(): a client that went away (a
        # killed llama-server, a timed-out probe) would SIGPIPE the whole worker. Ignored, the
        # write fails with EPIPE and it just drops that client (an ignored signal survives exec).
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    return preexec


@dataclass
class Status:
    restarts: int = 0
    last_probe: WorkerInfo | None = None


class Worker:
    """Supervises the rpc-server child until `stop()`."""

    def __init__(self, binary: Path, opts: WorkerOptions,
                 environ: Mapping[str, str] | None = None) -> None:
        self.binary = binary
        self.opts = opts
        self.environ = dict(os.environ if environ is None else environ)
        self.proc: asyncio.subprocess.Process | None = None
        self.status = Status()
        self.tail: collections.deque[str] = collections.deque(maxlen=50)
        self._stopping = asyncio.Event()

    async def _spawn(self) -> asyncio.subprocess.Process:
        argv = rpc_server_argv(self.binary, self.opts)
        env = rpc_server_env(self.environ, self.opts, default_cache_dir())
        os.makedirs(env["LLAMA_CACHE"], exist_ok=True)
        log.info("starting %s (LLAMA_CACHE=%s%s)", " ".join(argv), env["LLAMA_CACHE"],
                 f", RLIMIT_DATA={data_limit(self.opts)}" if self.opts.mem else "")
        return await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=env,
            preexec_fn=_preexec(data_limit(self.opts)), start_new_session=True)

    async def _pump(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        prefix = f"worker[{self.opts.endpoint}:{proc.pid}]"
        while True:
            try:
                raw = await proc.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip()
            self.tail.append(line)
            log.log(_LEVELS[log_level_for(line)], "%s %s", prefix, line)

    async def _probe(self) -> WorkerInfo:
        info = await hello(self._probe_host(), self.opts.port, deadline_s=PROBE_DEADLINE_S)
        self.status.last_probe = info
        return info

    def _probe_host(self) -> str:
        return "127.0.0.1" if self.opts.host in ("0.0.0.0", "") else self.opts.host

    async def _wait_ready(self, proc: asyncio.subprocess.Process) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while (time.monotonic() < deadline and proc.returncode is None
               and not self._stopping.is_set()):
            info = await self._probe()
            if info.up or info.busy:
                if info.up:
                    devs = ", ".join(f"#{d.index} {d.free // 2**20}/{d.total // 2**20} MiB free"
                                     for d in info.devices)
                    log.info("worker ready on %s: RPC %s, devices: %s", self.opts.endpoint,
                             ".".join(map(str, info.version or ())), devs)
                return True
            await asyncio.sleep(0.2)
        return False

    async def _watch(self, proc: asyncio.subprocess.Process) -> str:
        """Until the child exits, stops answering, or we are told to stop: returns why."""
        failures = 0
        exited = asyncio.ensure_future(proc.wait())
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            while True:
                done, _ = await asyncio.wait({exited, stop}, timeout=PROBE_INTERVAL_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    return "stop"
                if exited in done:
                    return f"exited with status {proc.returncode}"
                info = await self._probe()
                if info.up or info.busy:
                    failures = 0
                    continue
                failures += 1
                log.warning("worker %s health check failed (%d/%d): %s", self.opts.endpoint,
                            failures, UNHEALTHY_PROBES, info.error)
                if failures >= UNHEALTHY_PROBES:
                    return f"unhealthy: {info.error}"
        finally:
            for f in (exited, stop):
                if not f.done():
                    f.cancel()

    async def _kill(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()

    async def run(self) -> None:
        """Start, watch, restart with backoff; returns after `stop()` with the child reaped."""
        failures = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            proc = self.proc = await self._spawn()
            pump = asyncio.create_task(self._pump(proc), name="worker-log")
            try:
                if not await self._wait_ready(proc):
                    why = (f"exited with status {proc.returncode} during start"
                           if proc.returncode is not None else
                           f"not answering {START_TIMEOUT_S:g}s after start")
                else:
                    why = await self._watch(proc)
            finally:
                await asyncio.shield(self._kill(proc))
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(pump, 1.0)
            if why == "stop" or self._stopping.is_set():
                break
            if self.status.restarts == 0 and BIND_FAILURE in "\n".join(self.tail):
                # Nothing will change by retrying: the address is taken or not ours.
                raise WorkerStartError(f"cannot listen on {self.opts.endpoint}: address in use "
                                       "or not available on this host")
            failures = 1 if time.monotonic() - started > STABLE_AFTER_S else failures + 1
            delay = backoff(failures)
            self.status.restarts += 1
            log.warning("worker %s %s; restarting in %.0fs", self.opts.endpoint, why, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
        self.proc = None

    def stop(self) -> None:
        self._stopping.set()


async def run_worker(binary: Path, opts: WorkerOptions) -> None:
    """The CLI's loop: SIGTERM/SIGINT stop the worker, the child is always reaped."""
    w = Worker(binary, opts)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, w.stop)
    await w.run()
