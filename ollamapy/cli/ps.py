"""`ollamapy ps [PREFIX]` and `ollamapy stop MODEL`, as Ollama's CLI prints and does them."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import click

from ollamapy.cli.client import Client, ClientError
from ollamapy.cli.common import fail, with_client
from ollamapy.cli.format import human_bytes, human_time, parse_time, print_table
from ollamapy.inference.jsontypes import JsonObject

HEADERS = ("NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL")


def processor(size: int, size_vram: int) -> str:
    """`100% CPU`, `100% GPU`, `48%/52% CPU/GPU`, or `Unknown` (Ollama's ps column)."""
    if size_vram == 0:
        return "100% CPU"
    if size_vram == size:
        return "100% GPU"
    if size_vram > size or size == 0:
        return "Unknown"
    cpu = math.floor((size - size_vram) / size * 100 + 0.5)
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


def split(devices: list[JsonObject]) -> str:
    """A model split over RPC workers: `45%/55% CPU/RPC(2)` by estimated size."""
    total = sum(int(d.get("size") or 0) for d in devices)
    remote = sum(int(d.get("size") or 0) for d in devices if d.get("worker"))
    workers = len({d.get("worker") for d in devices if d.get("worker")})
    if total <= 0:
        return f"RPC({workers})"
    rpc = math.floor(remote / total * 100 + 0.5)
    if rpc == 100:
        return f"100% RPC({workers})"
    return f"{100 - rpc}%/{rpc}% local/RPC({workers})"


def until(expires_at: str | None, now: datetime | None = None) -> str:
    expires = parse_time(expires_at)
    now = now or datetime.now(UTC)
    if expires is not None and expires < now:
        return "Stopping..."
    return human_time(expires, "Never", now)


def rows(models: list[JsonObject], prefix: str = "",
         now: datetime | None = None) -> list[list[str]]:
    out = []
    for m in models:
        name = str(m.get("name", ""))
        if prefix and not name.startswith(prefix):
            continue
        size, vram = int(m.get("size") or 0), int(m.get("size_vram") or 0)
        where = split(m["devices"]) if m.get("devices") else processor(size, vram)
        out.append([name, str(m.get("digest", ""))[:12], human_bytes(size), where,
                    str(m.get("context_length") or 0),
                    until(m.get("expires_at"), now)])
    return out


@click.command("ps")
@click.argument("prefix", required=False, default="")
@with_client
def ps(client: Client, prefix: str) -> None:
    """List running models"""
    body = client.request("GET", "/api/ps") or {}
    print_table(HEADERS, rows(body.get("models") or [], prefix))


@click.command("stop")
@click.argument("model")
@with_client
def stop(client: Client, model: str) -> None:
    """Stop a running model"""
    try:
        for _ in client.stream("POST", "/api/generate", {"model": model, "keep_alive": 0}):
            pass
    except ClientError as e:
        if "not found" in e.message:
            fail(f'couldn\'t find model "{model}" to stop')
        raise
