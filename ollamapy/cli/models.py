"""`ollamapy create|show|list|cp|rm`: Ollama's model-management commands, over HTTP only.

`create` mirrors Ollama's client: parse the Modelfile, resolve FROM/ADAPTER paths relative to it
(`~` expanded), hash each local file, upload it through `/api/blobs` unless the server already has
it, then stream `/api/create` progress.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ollamapy.cli.client import Client, ClientError
from ollamapy.cli.common import fail, with_client
from ollamapy.cli.format import (
    human_bytes,
    human_time,
    parse_time,
    print_table,
    rows_lines,
)
from ollamapy.cli.progress import ProgressView
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.store.digest import sha256_file

CHUNK = 1 << 20


# ------------------------------------------------------------------ create
def expand_path(path: str, relative_dir: Path) -> Path:
    """Ollama's expandPath: absolute, `~`, `~user/...`, else relative to the Modelfile's dir."""
    if path.startswith("~"):
        return Path(os.path.abspath(os.path.expanduser(path)))
    p = Path(path)
    if p.is_absolute():
        return Path(os.path.abspath(p))
    return Path(os.path.abspath(relative_dir / p))


def model_files(path: Path) -> list[Path]:
    """FROM/ADAPTER path -> local GGUF files (a file, or a directory's *.gguf / *.bin)."""
    if path.is_file():
        return [path]
    found = sorted(path.glob("*.gguf")) or sorted(path.glob("*.bin"))
    if not found:
        raise click.ClickException("no Modelfile or safetensors files found")
    out = []
    root = path.resolve()
    for f in found:
        real = f.resolve()
        if root not in real.parents:
            raise click.ClickException(f"insecure path: {os.path.relpath(real, root)}")
        out.append(real)
    return out


def upload_blob(client: Client, path: Path, digest: str, progress: ProgressView) -> None:
    """HEAD the blob; POST the file with a percentage display unless the server has it."""
    try:
        client.request("HEAD", f"/api/blobs/{digest}")
        return
    except ClientError as e:
        if e.status != 404:
            raise
    size = path.stat().st_size
    label = f"copying file {digest}"

    def body() -> Any:
        sent = 0
        last_pct = -1
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                sent += len(chunk)
                pct = int(100 * sent / size) if size else 100
                if pct != last_pct:
                    last_pct = pct
                    progress.spin(label, f"{label} {pct}%")
                yield chunk

    import httpx

    try:
        r = client._http.post(f"/api/blobs/{digest}", content=body(),
                              headers={"Content-Type": "application/octet-stream"},
                              timeout=httpx.Timeout(None, connect=5.0))
    except httpx.HTTPError as e:
        raise ClientError(str(e) or type(e).__name__) from None
    client._raise_for(r)
    progress.spin(label, f"{label} 100%", done=True)


def build_request(modelfile_text: str, relative_dir: Path, client: Client,
                  progress: ProgressView) -> JsonObject:
    """Modelfile -> /api/create body, uploading local files as blobs on the way."""
    from ollamapy.modelfile import ModelfileError, parse, to_request

    try:
        parsed = to_request(parse(modelfile_text))
    except ModelfileError as e:
        raise click.ClickException(str(e)) from None
    for w in parsed.warnings:
        click.echo(w)
    req: JsonObject = {}
    files: dict[str, str] = {}
    adapters: dict[str, str] = {}
    progress.update({"status": "gathering model components"})
    for src in parsed.from_:
        path = expand_path(src, relative_dir)
        if not path.exists():
            req["from"] = src
            continue
        for f in model_files(path):
            digest = sha256_file(f)
            upload_blob(client, f, digest, progress)
            files[f.name] = digest
    for src in parsed.adapters:
        path = expand_path(src, relative_dir)
        if not path.exists():
            raise click.ClickException(f"adapter {src!r} not found")
        for f in model_files(path):
            digest = sha256_file(f)
            upload_blob(client, f, digest, progress)
            adapters[f.name] = digest
    if files:
        req["files"] = files
    if adapters:
        req["adapters"] = adapters
    if parsed.template is not None:
        req["template"] = parsed.template
    if parsed.system is not None:
        req["system"] = parsed.system
    if parsed.license:
        req["license"] = parsed.license
    if parsed.parameters:
        req["parameters"] = parsed.parameters
    if parsed.messages:
        req["messages"] = parsed.messages
    for key in ("renderer", "parser", "requires"):
        if getattr(parsed, key):
            req[key] = getattr(parsed, key)
    return req


@click.command("create", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model")
@click.option("-f", "--file", "file", default=None,
              help='Name of the Modelfile (default "Modelfile")')
@click.option("-q", "--quantize", default=None, help="Quantize model to this level (e.g. q4_K_M)")
@with_client
def create(client: Client, model: str, file: str | None, quantize: str | None) -> None:
    """Create a model from a Modelfile"""
    client.heartbeat()
    if file is None:
        path = Path("Modelfile")
        text = path.read_text(errors="replace") if path.is_file() else "FROM ."
    else:
        path = Path(os.path.expanduser(file))
        if not path.is_file():
            fail("specified Modelfile wasn't found")
        text = path.read_bytes().decode("utf-8", errors="replace")
    progress = ProgressView("creating")
    try:
        req = build_request(text, Path(os.path.abspath(path)).parent, client, progress)
        req["model"] = model
        if quantize:
            req["quantize"] = quantize
        req["stream"] = True
        for msg in client.stream("POST", "/api/create", req):
            if msg.get("digest") and not msg.get("total"):
                msg = {"status": msg.get("status", "")}  # no size to draw a bar of
            progress.update(msg)
    finally:
        progress.close()


# ------------------------------------------------------------------ show
SHOW_FLAGS = ("license", "modelfile", "parameters", "system", "template")
EMPTY = {
    "license": "No license was specified for this model.",
    "parameters": "No parameters were specified for this model.",
    "system": "No system message was specified for this model.",
    "template": "No prompt template was specified for this model.",
}


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _head(text: str, n: int) -> list[list[str]]:
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    rows = [["", x] for x in (lines if n < 0 else lines[:n])]
    if 0 <= n < len(lines):
        rows.append(["", "..."])
    return rows


def _meta_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int | float):
        from ollamapy.gofmt import format_float

        return format_float(float(v))
    if isinstance(v, list):
        items = [_meta_value(x) for x in v]
        shown, width = 0, 1
        for i, it in enumerate(items):
            w = len(it) + (2 if i else 0)
            if width + w > 10 and i > 0:
                break
            width += w
            shown += 1
        if shown < len(items):
            return "[" + " ".join(items[:shown]) + f" ...+{len(items) - shown} more]"
        return "[" + " ".join(items) + "]"
    return type(v).__name__


def show_info(resp: JsonObject, verbose: bool) -> str:
    """Ollama's default `show` view: Model, Capabilities, Projector, Parameters, System, License."""
    out: list[str] = []

    def section(title: str, rows: list[list[str]], width: int = 30) -> None:
        out.append(f"  {title}")
        out.extend(rows_lines(rows, width))
        out.append("")

    details = resp.get("details") or {}
    info = resp.get("model_info") or {}
    rows: list[list[str]] = []
    if info:
        arch = str(info.get("general.architecture", ""))
        rows.append(["", "architecture", arch])
        params = details.get("parameter_size") or ""
        if not params and isinstance(info.get("general.parameter_count"), int | float):
            from ollamapy.gguf import human_number

            params = human_number(int(info["general.parameter_count"]))
        rows.append(["", "parameters", params])
        for key, label in (("context_length", "context length"),
                           ("embedding_length", "embedding length")):
            v = info.get(f"{arch}.{key}")
            if isinstance(v, int | float):
                rows.append(["", label, _num(v)])
    else:
        rows.append(["", "architecture", details.get("family", "")])
        rows.append(["", "parameters", details.get("parameter_size", "")])
    rows.append(["", "quantization", details.get("quantization_level", "")])
    section("Model", rows)
    caps = resp.get("capabilities") or []
    if caps:
        section("Capabilities", [["", c] for c in caps])
    proj = resp.get("projector_info")
    if proj:
        arch = str(proj.get("general.architecture", ""))
        prow = [["", "architecture", arch]]
        if isinstance(proj.get("general.parameter_count"), int | float):
            from ollamapy.gguf import human_number

            prow.append(["", "parameters", human_number(int(proj["general.parameter_count"]))])
        for key, label in (("vision.embedding_length", "embedding length"),
                           ("vision.projection_dim", "dimensions")):
            v = proj.get(f"{arch}.{key}")
            if isinstance(v, int | float):
                prow.append(["", label, _num(v)])
        section("Projector", prow)
    if resp.get("parameters"):
        section("Parameters", [["", *line.split()] for line in resp["parameters"].splitlines()
                               if line.strip()])
    if resp.get("system"):
        section("System", _head(resp["system"], 2), 100)
    if resp.get("license"):
        section("License", _head(resp["license"], 2), 100)
    if verbose:
        section("Metadata", [["", k, _meta_value(info[k])] for k in sorted(info)])
        tensors = resp.get("tensors") or []
        if tensors:
            section("Tensors", [["", t["name"], t["type"],
                                 "[" + " ".join(str(x) for x in t["shape"]) + "]"]
                                for t in tensors])
    return "\n".join(out) + "\n"


@click.command("show", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model")
@click.option("--license", "show_license", is_flag=True, help="Show license of a model")
@click.option("--modelfile", is_flag=True, help="Show Modelfile of a model")
@click.option("--parameters", is_flag=True, help="Show parameters of a model")
@click.option("--template", is_flag=True, help="Show template of a model")
@click.option("--system", is_flag=True, help="Show system message of a model")
@click.option("-v", "--verbose", is_flag=True, help="Show detailed model information")
@with_client
def show(client: Client, model: str, show_license: bool, modelfile: bool, parameters: bool,
         template: bool, system: bool, verbose: bool) -> None:
    """Show information for a model"""
    chosen = [n for n, on in (("license", show_license), ("modelfile", modelfile),
                              ("parameters", parameters), ("system", system),
                              ("template", template)) if on]
    if len(chosen) > 1:
        fail("only one of '--license', '--modelfile', '--parameters', '--system', "
             "or '--template' can be specified")
    client.heartbeat()
    resp = client.request("POST", "/api/show", {"model": model, "verbose": verbose})
    if chosen:
        kind = chosen[0]
        value = resp.get(kind) or ""
        click.echo(value if value or kind == "modelfile" else EMPTY[kind])
        return
    click.echo(show_info(resp, verbose), nl=False)


# ------------------------------------------------------------------ list / cp / rm
def list_rows(models: list[JsonObject], prefix: str | None) -> list[list[str]]:
    rows = []
    for m in models:
        name = str(m.get("name") or m.get("model") or "")
        if prefix and not name.startswith(prefix):
            continue
        rows.append([name, str(m.get("digest", ""))[:12], human_bytes(int(m.get("size") or 0)),
                     human_time(parse_time(m.get("modified_at")), "Never")])
    return rows


@click.command("list", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("prefix", required=False)
@with_client
def list_models(client: Client, prefix: str | None) -> None:
    """List models"""
    client.heartbeat()
    resp = client.request("GET", "/api/tags") or {}
    print_table(["NAME", "ID", "SIZE", "MODIFIED"], list_rows(resp.get("models") or [], prefix))


@click.command("cp", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source")
@click.argument("destination")
@with_client
def copy(client: Client, source: str, destination: str) -> None:
    """Copy a model"""
    client.heartbeat()
    client.request("POST", "/api/copy", {"source": source, "destination": destination})
    click.echo(f"copied '{source}' to '{destination}'")


@click.command("rm", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("models", nargs=-1, required=True)
@with_client
def remove(client: Client, models: tuple[str, ...]) -> None:
    """Remove a model"""
    client.heartbeat()
    for name in models:
        try:  # unload it first, like Ollama (empty prompt + keep_alive 0 never loads)
            client.request("POST", "/api/generate", {"model": name, "keep_alive": 0,
                                                     "stream": False})
        except ClientError as e:
            if "not found" not in e.message.lower() and e.status != 404:
                click.echo(f"Warning: unable to stop model '{name}'", err=True)
        client.request("DELETE", "/api/delete", {"model": name})
        click.echo(f"deleted '{name}'")
