"""`ollamapy runners`: which llama-server builds this install can use."""

from __future__ import annotations

import click

from ollamapy.runner.locate import find_runners


@click.command(help="List the llama-server runners ollamapy can find")
def runners() -> None:
    found = find_runners()
    if not found:
        raise click.ClickException(
            "no llama-server runner found: run `make runner` (or set OLLAMAPY_RUNNERS, "
            "or put llama-server on PATH)"
        )
    click.echo(f"{'VARIANT':<10}{'COMMIT':<14}{'SOURCE':<18}PATH")
    for r in found:
        click.echo(f"{r.variant:<10}{(r.commit[:12] or '-'):<14}{r.source:<18}{r.binary}")
