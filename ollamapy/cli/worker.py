"""`ollamapy worker`: serve this machine's devices to an ollamapy server over llama.cpp RPC."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(help="Run a llama.cpp RPC worker (ggml-rpc-server) for split models")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="bind address; non-loopback needs --allow-remote")
@click.option("--port", default=50052, show_default=True, type=int)
@click.option("--device", "devices", multiple=True,
              help="llama.cpp device to expose (CUDA0, CPU, ...); repeat or comma-separate")
@click.option("--mem", default=0, type=click.IntRange(min=0), show_default=True,
              help="MiB clients may allocate in host memory (0 = no cap)")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="tensor cache directory (default ~/.cache/ollamapy/worker)")
@click.option("--no-cache", is_flag=True, help="do not cache received tensors on disk")
@click.option("--threads", default=0, type=click.IntRange(min=0), help="CPU device threads")
@click.option("--variant", default="", help="runner variant whose RPC server to run (cpu, cuda)")
@click.option("--allow-remote", is_flag=True,
              help="allow a non-loopback bind (the RPC protocol is unauthenticated)")
def worker(host: str, port: int, devices: tuple[str, ...], mem: int, cache: Path | None,
           no_cache: bool, threads: int, variant: str, allow_remote: bool) -> None:
    import asyncio

    from ollamapy import logs
    from ollamapy.errors import OllamaError, RunnerNotFound
    from ollamapy.worker.locate import find_rpc_server
    from ollamapy.worker.options import WorkerOptions, check_bind, validate
    from ollamapy.worker.supervisor import WorkerStartError, run_worker

    names = tuple(d.strip() for v in devices for d in v.split(",") if d.strip())
    opts = WorkerOptions(host=host, port=port, devices=names, mem=mem, cache=cache,
                         use_cache=not no_cache, threads=threads, allow_remote=allow_remote)
    try:
        validate(opts)
        warning = check_bind(opts)
        binary = find_rpc_server(variant)
    except (OllamaError, RunnerNotFound) as e:
        raise click.ClickException(str(e)) from None
    logs.setup(0)
    if warning:
        click.echo(f"WARNING: {warning}", err=True)
    try:
        asyncio.run(run_worker(binary, opts))
    except WorkerStartError as e:
        raise click.ClickException(str(e)) from None
