"""`ollamapy runners`: which llama-server builds this install can use."""

from __future__ import annotations

import click

from ollamapy.runner.locate import VARIANT_NEEDS, find_runners, usable
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
    if any(r.variant in VARIANT_NEEDS for r in found):
        from ollamapy.gpu import discover

        libraries = discover().libraries()
    click.echo(f"{'VARIANT':<10}{'COMMIT':<14}{'SOURCE':<18}{'RPC':<5}PATH")
    for r in found:
        rpc = rpc_server_of(r)
        click.echo(f"{r.variant:<10}{(r.commit[:12] or '-'):<14}{r.source:<18}"
                   f"{'yes' if rpc else '-':<5}{r.binary}")
        if rpc:
            click.echo(f"{'':<47}{rpc}")
        if libraries is not None and not usable(r, libraries):
            need = " or ".join(VARIANT_NEEDS[r.variant])
            click.echo(f"{'':<47}not used here: no {need} device found")
