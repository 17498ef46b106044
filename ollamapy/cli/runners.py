"""`ollamapy runners`: which llama-server builds this install can use."""

from __future__ import annotations

import click

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
    click.echo(f"{'VARIANT':<10}{'COMMIT':<14}{'SOURCE':<18}{'RPC':<5}PATH")
    for r in found:
        rpc = "yes" if rpc_server_of(r) else "-"
        click.echo(f"{r.variant:<10}{(r.commit[:12] or '-'):<14}{r.source:<18}{rpc:<5}{r.binary}")
        if rpc_server_of(r):
            click.echo(f"{'':<42}{rpc_server_of(r)}")
