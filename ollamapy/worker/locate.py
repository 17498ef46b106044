"""Which ggml-rpc-server `ollamapy worker` runs: the one next to a found llama-server."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from ollamapy.errors import RunnerNotFound
from ollamapy.runner.locate import Runner, find_runners

RPC_SERVER_NAMES = ("ggml-rpc-server", "rpc-server")  # the target was renamed upstream


def rpc_server_of(runner: Runner) -> Path | None:
    """The RPC server built with this runner (same directory, same ggml), if any."""
    for name in RPC_SERVER_NAMES:
        p = runner.binary.parent / name
        if os.access(p, os.X_OK):
            return p
    return None


def find_rpc_server(variant: str = "", environ: Mapping[str, str] | None = None) -> Path:
    """The best runner's RPC server (GPU variants first, as find_runners orders them), or the
    one named by `variant`; then rpc-server on PATH."""
    env = dict(os.environ if environ is None else environ)
    for r in find_runners(env):
        if variant and r.variant != variant:
            continue
        p = rpc_server_of(r)
        if p is not None:
            return p
    for name in RPC_SERVER_NAMES:
        on_path = shutil.which(name, path=env.get("PATH"))
        if on_path:
            return Path(on_path)
    raise RunnerNotFound("no ggml-rpc-server found: run `make runner` (it builds the RPC server "
                         "with llama-server)" + (f" for variant {variant}" if variant else ""))
