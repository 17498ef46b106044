"""`ollamapy serve`."""

from __future__ import annotations

import click


@click.command(help="Start ollamapy")
def serve() -> None:
    from ollamapy import logs
    from ollamapy.config import load_settings
    from ollamapy.errors import ConfigError

    try:
        settings = load_settings()
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    logs.setup(settings.debug)
    from ollamapy.server.serve import run

    run(settings)
