"""`ollamapy run MODEL [PROMPT]`: show-or-pull, preload, then one answer or the REPL.

Mirrors Ollama's RunHandler: a prompt argument, piped stdin or a non-terminal stdout mean one
streamed `/api/generate` answer; otherwise the interactive session (ollamapy.cli.repl) chats
through `/api/chat`. Everything goes through cli.client.Client (HTTP only, import-light).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from ollamapy.cli.client import ClientError
from ollamapy.inference.jsontypes import JsonObject

if TYPE_CHECKING:
    from ollamapy.cli.client import Client
    from ollamapy.cli.render import AnswerView

THINK_LEVELS = ("high", "medium", "low", "max")


@dataclass
class RunOptions:
    """What one run session sends: the model, history, options and display switches."""

    model: str
    parent_model: str = ""
    prompt: str = ""
    messages: list[JsonObject] = field(default_factory=list)
    word_wrap: bool = True
    format: str = ""
    system: str = ""
    options: JsonObject = field(default_factory=dict)
    images: list[str] = field(default_factory=list)
    multimodal: bool = False
    keep_alive: str | None = None
    think: bool | str | None = None
    hide_thinking: bool = False
    verbose: bool = False

    def copy(self) -> RunOptions:
        return RunOptions(**{**self.__dict__, "messages": list(self.messages),
                             "options": dict(self.options), "images": list(self.images)})


# --------------------------------------------------------------------------- pure decisions

def parse_think(value: str | None) -> bool | str | None:
    """--think / --think=VALUE (Ollama: true, false, high, medium, low; ollamapy adds max)."""
    if value is None:
        return None
    v = value.strip().lower()
    if v in ("", "true"):
        return True
    if v == "false":
        return False
    if v in THINK_LEVELS:
        return v
    raise click.UsageError(f"invalid value for --think: {value!r} (must be true, false, high, "
                           "medium, or low)")


def parse_keepalive(value: str | None) -> str | None:
    """--keepalive uses Go duration syntax (`5m`, `1h`, `-1s`); sent to the server as given."""
    if value is None or value == "":
        return None
    from ollamapy.gofmt import parse_duration

    try:
        parse_duration(value)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    return value


def format_field(fmt: str) -> Any:
    """--format: "" -> omitted, "json" -> "json", a JSON object text -> that schema."""
    if not fmt:
        return None
    if fmt == "json":
        return "json"
    try:
        schema = json.loads(fmt)
    except ValueError:
        schema = None
    if not isinstance(schema, dict):
        raise click.UsageError(f'invalid format: "{fmt}"; expected "json" or a JSON schema')
    return schema


def infer_think(capabilities: list[str], opts: RunOptions, explicit: bool) -> bool | str | None:
    """Ollama's inferThinkingOption: thinking models think unless the user said otherwise."""
    if explicit:
        return opts.think
    return True if "thinking" in capabilities else None


def is_interactive(has_prompt: bool, stdin_tty: bool, stdout_tty: bool) -> bool:
    return not has_prompt and stdin_tty and stdout_tty


def base_request(opts: RunOptions) -> JsonObject:
    body: JsonObject = {"model": opts.model}
    fmt = format_field(opts.format)
    if fmt is not None:
        body["format"] = fmt
    if opts.options:
        body["options"] = dict(opts.options)
    if opts.keep_alive is not None:
        body["keep_alive"] = opts.keep_alive
    if opts.think is not None:
        body["think"] = opts.think
    return body


def generate_request(opts: RunOptions) -> JsonObject:
    body = base_request(opts)
    body["prompt"] = opts.prompt
    if opts.system:
        body["system"] = opts.system
    if opts.images:
        body["images"] = list(opts.images)
    return body


def chat_request(opts: RunOptions) -> JsonObject:
    body = base_request(opts)
    body["messages"] = list(opts.messages)
    return body


# ------------------------------------------------------------------------------- HTTP shells

class Session:
    """The calls a run session makes, printing as Ollama's CLI does."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def show(self, opts: RunOptions) -> JsonObject:
        body: JsonObject = {"model": opts.model}
        if opts.system:
            body["system"] = opts.system
        if opts.options:
            body["options"] = opts.options
        return self.client.request("POST", "/api/show", body) or {}

    def show_or_pull(self, name: str, insecure: bool = False) -> JsonObject:
        try:
            return self.client.request("POST", "/api/show", {"model": name}) or {}
        except ClientError as e:
            if e.status != 404:
                raise
            not_found = e
        try:
            self.pull(name, insecure)
        except ClientError as e:
            if e.status in (404, 405) and "page not found" in e.message + "method not allowed":
                raise not_found from None  # this server has no /api/pull
            raise
        return self.client.request("POST", "/api/show", {"model": name}) or {}

    def pull(self, name: str, insecure: bool = False) -> None:
        from ollamapy.cli.registry import pull_model

        pull_model(self.client, name, insecure)

    def load(self, opts: RunOptions) -> None:
        """Preload (empty generate); passes think so an unsupported value fails before the REPL."""
        body: JsonObject = {"model": opts.model}
        if opts.keep_alive is not None:
            body["keep_alive"] = opts.keep_alive
        if opts.think is not None:
            body["think"] = opts.think
        from ollamapy.cli.render import Spinner

        spinner = Spinner().start()
        try:
            for _ in self.client.stream("POST", "/api/generate", body):
                pass
        finally:
            spinner.stop()

    def chat(self, opts: RunOptions) -> JsonObject | None:
        """One streamed chat turn; None when cancelled with Ctrl+C."""
        from ollamapy.cli.render import AnswerView, WordWrap, stats_block, terminal_width

        wrap = WordWrap(terminal_width(), enabled=opts.word_wrap)
        view = AnswerView(wrap, plain=False, hide_thinking=opts.hide_thinking)
        latest, role = self._stream(opts, "/api/chat", chat_request(opts), view, chat=True)
        if latest is None:
            return None
        if opts.messages:
            sys.stdout.write("\n\n")
            sys.stdout.flush()
        if opts.verbose:
            sys.stderr.write(stats_block(latest))
            sys.stderr.flush()
        return {"role": role, "content": latest.get("_content", "")}

    def generate(self, opts: RunOptions) -> None:
        from ollamapy.cli.render import AnswerView, WordWrap, stats_block, terminal_width

        plain = not sys.stdout.isatty()
        wrap = WordWrap(terminal_width(), enabled=opts.word_wrap)
        view = AnswerView(wrap, plain=plain, hide_thinking=opts.hide_thinking)
        latest, _ = self._stream(opts, "/api/generate", generate_request(opts), view, chat=False)
        if latest is None:
            return
        if opts.prompt:
            sys.stdout.write("\n\n")
            sys.stdout.flush()
        if latest.get("done") and opts.verbose:
            sys.stderr.write(stats_block(latest))
            sys.stderr.flush()

    def _stream(self, opts: RunOptions, path: str, body: JsonObject, view: AnswerView,
                *, chat: bool) -> tuple[JsonObject | None, str]:
        from ollamapy.cli.render import Spinner

        spinner = Spinner().start()
        latest: JsonObject = {}
        content: list[str] = []
        role = "assistant"
        try:
            for chunk in self.client.stream("POST", path, body):
                if chat:
                    msg = chunk.get("message") or {}
                    role = msg.get("role") or role
                    thinking = msg.get("thinking") or ""
                    piece = msg.get("content") or ""
                    tools = bool(msg.get("tool_calls"))
                else:
                    thinking = chunk.get("thinking") or ""
                    piece = chunk.get("response") or ""
                    tools = bool(chunk.get("tool_calls"))
                if piece or not opts.hide_thinking:
                    spinner.stop()
                content.append(piece)
                text = view.feed(thinking, piece, tools)
                if text:
                    sys.stdout.write(text)
                    sys.stdout.flush()
                latest = chunk
        except KeyboardInterrupt:
            spinner.stop()
            sys.stdout.write(view.finish() + "\n")
            sys.stdout.flush()
            return None, role
        finally:
            spinner.stop()
        if tail := view.finish():
            sys.stdout.write(tail)
        latest = dict(latest)
        latest["_content"] = "".join(content)
        return latest, role

    def embed(self, opts: RunOptions) -> None:
        body: JsonObject = {"model": opts.model, "input": opts.prompt}
        if opts.keep_alive is not None:
            body["keep_alive"] = opts.keep_alive
        resp = self.client.request("POST", "/api/embed", body) or {}
        vectors = resp.get("embeddings") or []
        if not vectors:
            raise ClientError("no embeddings returned")
        sys.stdout.write(json.dumps(vectors[0], separators=(",", ":")) + "\n")

    def create(self, name: str, opts: RunOptions) -> None:
        """`/save`: a new model from the current one plus this session's system/options/history."""
        body: JsonObject = {"model": name, "from": opts.parent_model or opts.model,
                                "stream": False}
        if opts.system:
            body["system"] = opts.system
        if opts.options:
            body["parameters"] = opts.options
        if opts.messages:
            body["messages"] = opts.messages
        self.client.request("POST", "/api/create", body)


# ------------------------------------------------------------------------------ the command

class _RunCommand(click.Command):
    """pflag's NoOptDefVal for --think: `--think` alone is a flag, only `--think=LEVEL` takes a
    value, so `run m --think "a prompt"` keeps the prompt a prompt."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        fixed = []
        for a in args:
            if a.startswith("--think="):
                a = "--think-value=" + a.split("=", 1)[1]
            fixed.append(a)
        return super().parse_args(ctx, fixed)


_EPILOG = """\b
Environment Variables:
      OLLAMA_HOST      IP Address for the ollamapy server (default 127.0.0.1:11434)
      OLLAMA_API_KEY   Bearer key sent to a server that requires API keys
      OLLAMA_NOHISTORY Do not preserve readline history (~/.ollama/history)
"""


@click.command(cls=_RunCommand, help="Run a model", epilog=_EPILOG,
               context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model")
@click.argument("prompt", nargs=-1)
@click.option("--keepalive", default=None, help="Duration to keep a model loaded (e.g. 5m)")
@click.option("--verbose", is_flag=True, help="Show timings for response")
@click.option("--insecure", is_flag=True, help="Use an insecure registry")
@click.option("--nowordwrap", is_flag=True,
              help="Don't wrap words to the next line automatically")
@click.option("--format", "fmt", default="", help="Response format (e.g. json)")
@click.option("--think", "think_flag", is_flag=True,
              help="Enable thinking mode: --think, or --think=true/false/high/medium/low")
@click.option("--think-value", hidden=True, default=None)
@click.option("--hidethinking", is_flag=True, help="Hide thinking output (if provided)")
def run(model: str, prompt: tuple[str, ...], keepalive: str | None, verbose: bool,
        insecure: bool, nowordwrap: bool, fmt: str, think_flag: bool, think_value: str | None,
        hidethinking: bool) -> None:
    explicit_think = think_flag or think_value is not None
    opts = RunOptions(model=model, format=fmt, verbose=verbose, hide_thinking=hidethinking,
                      think=parse_think(think_value if think_value is not None else
                                        ("true" if think_flag else None)),
                      keep_alive=parse_keepalive(keepalive))
    format_field(fmt)  # reject a bad --format before touching the server

    prompts = list(prompt)
    stdin_tty = sys.stdin.isatty()
    if not stdin_tty:
        prompts.insert(0, sys.stdin.read())
    opts.prompt = " ".join(prompts)
    interactive = is_interactive(bool(prompts), stdin_tty, sys.stdout.isatty())
    opts.word_wrap = not nowordwrap  # and only where stdout is a terminal (terminal_width)

    from ollamapy.cli.client import Client
    from ollamapy.cli.common import fail
    from ollamapy.cli.render import WordWrap, terminal_width

    try:
        with Client() as client:
            client.heartbeat()
            session = Session(client)
            info = session.show_or_pull(model, insecure)
            caps = list(info.get("capabilities") or [])
            opts.parent_model = (info.get("details") or {}).get("parent_model") or ""
            opts.multimodal = "vision" in caps or bool(info.get("projector_info"))
            if "embedding" in caps and "completion" not in caps:
                if not opts.prompt.strip():
                    fail("embedding models require input text. Usage: ollamapy run "
                         f"{model} \"your text here\"")
                session.embed(opts)
                return
            opts.think = infer_think(caps, opts, explicit_think)
            if not interactive:
                if opts.multimodal:
                    from ollamapy.cli.repl import extract_images

                    opts.prompt, opts.images = extract_images(opts.prompt, sys.stderr)
                session.generate(opts)
                return
            session.load(opts)
            for msg in info.get("messages") or []:
                if msg.get("role") == "user":
                    sys.stdout.write(f">>> {msg.get('content', '')}\n")
                elif msg.get("role") == "assistant":
                    wrap = WordWrap(terminal_width(), enabled=opts.word_wrap)
                    sys.stdout.write(wrap.feed(msg.get("content", "")) + "\n\n")
            sys.stdout.flush()
            from ollamapy.cli.repl import Repl

            Repl(session, opts, explicit_think=explicit_think).loop()
    except ClientError as e:
        fail(e.message)
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        sys.exit(130)
