"""Shared CLI plumbing: one way to report an error (`Error: <message>`, exit 1) and to get a client.

Commands wrap their body with `with_client`, which hands them a `cli.client.Client` and turns
`ClientError` (server errors, connection failures) into Ollama's one-line error output.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from ollamapy.cli.client import Client, ClientError

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `Error: <message>` to stderr and exit (Ollama's cobra error output)."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def with_client(fn: F) -> F:
    """Call fn(client, *args, **kwargs) with a Client; ClientError -> `Error: ...`, exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with Client() as client:
                return fn(client, *args, **kwargs)
        except ClientError as e:
            fail(e.message)

    return wrapper  # type: ignore[return-value]
