"""The real runner factory: build argv, spawn llama-server, wait for /health, read /props.

The scheduler only sees the small `RunnerHandle` surface (which `RunnerProcess` provides), so
unit tests swap in a fake launcher and exercise every scheduling path without processes.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import aiohttp

from ollamapy.errors import OllamaError, RunnerError, RunnerNotFound
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.logs import kv
from ollamapy.runner.client import RunnerClient
from ollamapy.runner.flags import LaunchConfig, build_args
from ollamapy.runner.locate import Runner
from ollamapy.runner.process import RunnerProcess, child_env, launch

log = logging.getLogger("ollamapy.scheduler")


class RunnerHandle(Protocol):
    """A started, healthy llama-server as the scheduler uses it."""

    base_url: str
    api_key: str  # sent as `Authorization: Bearer`; only /health answers without it
    props: JsonObject

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    @property
    def num_ctx(self) -> int: ...

    def sizes(self) -> tuple[int, int]: ...

    async def wait(self) -> int: ...

    async def stop(self, grace: float) -> None: ...

    def exit_message(self) -> str: ...

    def last_error(self) -> str: ...


class Launcher(Protocol):
    async def launch(self, cfg: LaunchConfig, name: str) -> RunnerHandle: ...


class ProcessLauncher:
    def __init__(self, pick: Callable[[], Runner], config_home: Path, *, stall_timeout: float,
                 environ: Mapping[str, str] | None = None) -> None:
        self._pick = pick
        self.runner: Runner | None = None
        self.config_home = config_home
        self.stall_timeout = stall_timeout
        self.environ = dict(os.environ if environ is None else environ)

    def find_runner(self) -> Runner | None:
        """The runner binary, looked up again until one exists (`make runner` may run after
        the server started)."""
        if self.runner is None:
            try:
                self.runner = self._pick()
            except RunnerNotFound as e:
                log.warning("%s", e)
        return self.runner

    async def launch(self, cfg: LaunchConfig, name: str) -> RunnerProcess:
        if self.runner is None:
            try:
                self.runner = self._pick()
            except RunnerNotFound as e:
                raise RunnerError(str(e)) from None
        args = build_args(cfg)
        env = child_env(self.environ, self.config_home)
        # Start-up probes use their own unpooled connections: a connection opened while the
        # runner was still loading must never be handed to a request later.
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True)) as probe:
            proc = await launch(self.runner.binary, args, env=env, name=name, session=probe,
                                stall_timeout=self.stall_timeout)
            try:
                proc.props = await self._props(probe, proc)
            except BaseException:
                await asyncio.shield(proc.stop(1.0))
                raise
        return proc

    async def _props(self, probe: aiohttp.ClientSession, proc: RunnerProcess) -> JsonObject:
        """/props after /health: slots, effective per-slot context, template caps (with the
        runner's key, like every request but /health)."""
        try:
            async with asyncio.timeout(10):
                return await RunnerClient(probe, proc.base_url, proc.api_key).props()
        except (TimeoutError, OllamaError) as e:
            if proc.returncode is not None:
                raise RunnerError(proc.exit_message()) from None
            log.warning("could not read runner /props", extra=kv(error=e))
        return {}
