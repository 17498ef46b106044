"""`ollamapy -v`: server and client versions, as `ollama -v` prints them, plus llama.cpp's."""

from __future__ import annotations

import click
import httpx

from ollamapy import __version__, pins
from ollamapy.cli.env import client_env
from ollamapy.config import client_host


def show_version() -> None:
    commit = pins.llama_cpp().short_commit
    env = client_env()
    try:
        r = httpx.get(f"{client_host(env.get('OLLAMA_HOST')).url}/api/version", timeout=2.0)
        server = r.json().get("version", "")
    except (httpx.HTTPError, ValueError):
        server = None
    if server is None:
        click.echo("Warning: could not connect to a running ollamapy instance")
        click.echo(f"Warning: client version is {__version__} (llama.cpp {commit})")
        return
    click.echo(f"ollamapy version is {server} (llama.cpp {commit})")
    if server != __version__:
        click.echo(f"Warning: client version is {__version__}")
