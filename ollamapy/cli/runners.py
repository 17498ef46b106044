"""`ollamapy runners`: which llama-server builds this install can use."""

from __future__ import annotations

import click

from ollamapy.runner import variants
from ollamapy.runner.locate import find_runners
from ollamapy.worker.locate import rpc_server_of


@click.command(help="List the llama-server runners ollamapy can find")
def runners() -> None:
    found = find_runners()
    if not found:
        raise click.ClickException(
            "no llama-server runner found: run `make runner` (or set OLLAMAPY_RUNNERS, "
            "or put llama-server on PATH)"
        )
    libraries: list[str] | None = None
    if any(variants.BY_NAME[r.variant].needs_gpu for r in found if r.variant in variants.BY_NAME):
        from ollamapy.placement.gpu import discover

        libraries = discover().libraries()
    click.echo(f"{'VARIANT':<10}{'COMMIT':<14}{'SOURCE':<18}PATH")
    for r in found:
        click.echo(f"{r.variant:<10}{(r.commit[:12] or '-'):<14}{r.source:<18}{r.binary}")
        rpc = rpc_server_of(r)
        if rpc:  # the RPC worker built with it (`ollamapy worker`)
            click.echo(f"{'  rpc':<10}{(r.commit[:12] or '-'):<14}{r.source:<18}{rpc}")
        why = variants.unusable_reason(r.variant, libraries) if libraries is not None else None
        if why is not None:
            click.echo(f"{'':<10}not used here: {why}")
