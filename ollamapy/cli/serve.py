"""`ollamapy serve`."""

from __future__ import annotations

import click


def environment_help() -> str:
    """Every setting with its default and meaning, like Ollama's `serve --help`."""
    from ollamapy.config import SETTINGS

    width = max(len(s.env) for s in SETTINGS)
    lines = ["Environment Variables:", ""]
    for s in SETTINGS:
        default = f" (default: {s.default})" if s.default else ""
        lines.append(f"  {s.env.ljust(width)}  {s.description}{default}")
    return "\n".join(lines)


class _ServeCommand(click.Command):
    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write("\n" + environment_help() + "\n")


@click.command(cls=_ServeCommand, help="Start ollamapy")
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
