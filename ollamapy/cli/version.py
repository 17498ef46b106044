"""`ollamapy -v`: server and client versions as `ollama -v` prints them, plus llama.cpp's commit
(the runner build pinned in pins.toml) because that is what decides model support."""

from __future__ import annotations

import click

from ollamapy import __version__


def version_lines(server: str | None, client: str, llama_commit: str,
                  error: str | None = None) -> list[str]:
    """Ollama's versionHandler: the server's version, then a warning when the client differs or
    no server answered. `error` is a server-side refusal (e.g. 401 from an API-key server)."""
    lines: list[str] = []
    if server is None:
        lines.append("Warning: could not connect to a running ollamapy instance"
                     + (f": {error}" if error else ""))
    else:
        lines.append(f"ollamapy version is {server} (llama.cpp {llama_commit})")
    if server != client:
        extra = "" if server is not None else f" (llama.cpp {llama_commit})"
        lines.append(f"Warning: client version is {client}{extra}")
    return lines


def show_version() -> None:
    from ollamapy import pins
    from ollamapy.cli.client import Client, ClientError

    commit = pins.llama_cpp().short_commit
    server: str | None = None
    error: str | None = None
    try:
        with Client(timeout=5.0) as client:
            server = client.server_version()
        if server is None:
            error = "unexpected answer to /api/version"
    except ClientError as e:
        if e.status is not None:
            error = e.message
    for line in version_lines(server, __version__, commit, error):
        click.echo(line)
