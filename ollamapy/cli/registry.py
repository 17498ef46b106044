"""`ollamapy pull NAME` and `ollamapy push NAME`, drawn by the CLI's one progress display
(`cli/progress.py`). Imports stay light: no server code."""

from __future__ import annotations

import click

from ollamapy.cli.client import Client
from ollamapy.cli.common import with_client
from ollamapy.cli.progress import ProgressView


def stream_progress(client: Client, path: str, model: str, insecure: bool, verb: str) -> None:
    """POST /api/pull|push and draw its progress; a ClientError propagates after the display
    has been closed (so `Error: ...` lands below it)."""
    view = ProgressView(verb)
    try:
        for msg in client.stream("POST", path, {"model": model, "insecure": insecure,
                                                "stream": True}):
            view.update(msg)
    finally:
        view.close()


def pull_model(client: Client, model: str, insecure: bool = False) -> None:
    """What `ollamapy run` uses when the model is missing."""
    stream_progress(client, "/api/pull", model, insecure, "pulling")


@click.command("pull", help="Pull a model from a registry")
@click.argument("model")
@click.option("--insecure", is_flag=True, help="Use an insecure registry")
@with_client
def pull(client: Client, model: str, insecure: bool) -> None:
    client.heartbeat()
    pull_model(client, model, insecure)


@click.command("push", help="Push a model to a registry")
@click.argument("model")
@click.option("--insecure", is_flag=True, help="Use an insecure registry")
@with_client
def push(client: Client, model: str, insecure: bool) -> None:
    client.heartbeat()
    stream_progress(client, "/api/push", model, insecure, "pushing")
    click.echo(f"\nYou can find your model at:\n\n\t{destination(model)}")


def destination(model: str) -> str:
    """Where a pushed model can be found: its ollama.com page for Ollama's registry, else the
    fully qualified name (cmd.PushHandler)."""
    from ollamapy.store.names import ModelName

    n = ModelName.try_parse(model)
    if n is None:
        return model
    if n.host.lower().endswith((".ollama.ai", ".ollama.com")):
        return "https://ollama.com/" + n.display_shortest().removesuffix(":latest")
    return str(n)
