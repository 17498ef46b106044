"""The `ollamapy run` interactive session: Ollama's generateInteractive, line for line in behaviour.

`Repl.handle(line)` is the whole state machine (multi-line blocks, slash commands, chat turns) and
writes to injected streams, so it is tested without a terminal; `Repl.loop` adds line editing
(GNU readline through `input()`), the history file, Ctrl+C and Ctrl+D.
"""

from __future__ import annotations

import base64
import os
import re
import sys
from pathlib import Path
from typing import Any, Protocol, TextIO

from ollamapy.cli.client import ClientError
from ollamapy.cli.render import parameters_text
from ollamapy.gofmt import parse_param
from ollamapy.inference.jsontypes import JsonObject

PROMPT = ">>> "
ALT_PROMPT = "... "
HISTORY_LIMIT = 100

USAGE = """Available Commands:
  /set            Set session variables
  /show           Show model information
  /load <model>   Load a session or model
  /save <model>   Save your current session
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command
  /? shortcuts    Help for keyboard shortcuts

Use \"\"\" to begin a multi-line message.
"""
USAGE_IMAGES = "Use /path/to/file to include .jpg, .png, or .webp images.\n"

USAGE_SET = """Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set history           Enable history
  /set nohistory         Disable history
  /set wordwrap          Enable wordwrap
  /set nowordwrap        Disable wordwrap
  /set format json       Enable JSON mode
  /set noformat          Disable formatting
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats
  /set think             Enable thinking
  /set nothink           Disable thinking

"""

USAGE_SHORTCUTS = """Available keyboard shortcuts:
  Ctrl + a            Move to the beginning of the line (Home)
  Ctrl + e            Move to the end of the line (End)
   Alt + b            Move back (left) one word
   Alt + f            Move forward (right) one word
  Ctrl + k            Delete the sentence after the cursor
  Ctrl + u            Delete the sentence before the cursor
  Ctrl + w            Delete the word before the cursor

  Ctrl + l            Clear the screen
  Ctrl + c            Stop the model from responding
  Ctrl + d            Exit ollamapy (/bye)

"""

USAGE_SHOW = """Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show modelfile    Show Modelfile for this model
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template

"""

USAGE_PARAMETERS = """Available Parameters:
  /set parameter seed <int>             Random number seed
  /set parameter num_predict <int>      Max number of tokens to predict
  /set parameter top_k <int>            Pick from top k num of tokens
  /set parameter top_p <float>          Pick token based on sum of probabilities
  /set parameter min_p <float>          Pick token based on top token probability * min_p
  /set parameter num_ctx <int>          Set the context size
  /set parameter temperature <float>    Set creativity level
  /set parameter repeat_penalty <float> How strongly to penalize repetitions
  /set parameter repeat_last_n <int>    Set how far back to look for repetitions
  /set parameter num_gpu <int>          The number of layers to send to the GPU
  /set parameter stop <string> <string> ...   Set the stop parameters

"""

NONE, PROMPT_BLOCK, SYSTEM_BLOCK = 0, 1, 2


class SessionApi(Protocol):
    """What the REPL needs from the server (ollamapy.cli.run.Session implements it)."""

    client: Any

    def chat(self, opts: Any) -> JsonObject | None: ...
    def show(self, opts: Any) -> JsonObject: ...
    def load(self, opts: Any) -> None: ...
    def create(self, name: str, opts: Any) -> None: ...


class ExitRepl(Exception):
    pass


_IMAGE_RE = re.compile(r"(?:[a-zA-Z]:)?(?:\./|/|\\)[\S\\ ]+?\.(?i:jpg|jpeg|png|webp)\b")
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
MAX_IMAGE_BYTES = 100 * 1024 * 1024


def _unescape_path(p: str) -> str:
    return re.sub(r"\\(.)", r"\1", p)


def extract_images(text: str, err: TextIO) -> tuple[str, list[str]]:
    """Image paths typed in a prompt become base64 images (Ollama's extractFileData)."""
    images: list[str] = []
    for raw in _IMAGE_RE.findall(text):
        path = Path(_unescape_path(raw))
        try:
            data = path.read_bytes() if path.stat().st_size <= MAX_IMAGE_BYTES else None
        except OSError:
            continue
        if data is None:
            raise ClientError("file size exceeds maximum limit (100MB)")
        is_webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
        if not (data.startswith(_IMAGE_MAGIC) or is_webp):
            raise ClientError(f"invalid image type: {path}")
        err.write(f"Added image '{path}'\n")
        text = text.replace(f"'{path}'", "").replace(f"'{raw}'", "").replace(raw, "")
        images.append(base64.b64encode(data).decode())
    return text.strip(), images


class Repl:
    def __init__(self, session: SessionApi, opts: Any, *, explicit_think: bool = False,
                 out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.session = session
        self.opts = opts
        self.explicit_think = explicit_think
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.buf: list[str] = []
        self.multiline = NONE
        self.use_alt = False
        self.pasting = False
        self.history_enabled = True

    # ---------------------------------------------------------------- the state machine
    def prompt(self) -> str:
        return ALT_PROMPT if self.use_alt else PROMPT

    def interrupt(self) -> None:
        """Ctrl+C at the prompt drops the line being composed (and any open block)."""
        self.use_alt = False
        self.multiline = NONE
        self.buf.clear()

    def handle(self, line: str) -> None:
        """One input line. Raises ExitRepl on /bye."""
        if self.multiline != NONE:
            before, closed = (line[:-3], True) if line.endswith('"""') else (line, False)
            self.buf.append(before)
            if not closed:
                self.buf.append("\n")
                self.use_alt = True
                return
            if self.multiline == SYSTEM_BLOCK:
                self._set_system("".join(self.buf))
                self.buf.clear()
            self.multiline = NONE
            self.use_alt = False
        elif line.startswith('"""'):
            rest = line[3:]
            closed = rest.endswith('"""')
            self.buf.append(rest[:-3] if closed else rest)
            if not closed:
                self.buf.append("\n")
                self.multiline = PROMPT_BLOCK
                self.use_alt = True
        elif line.startswith("/") and self._command(line):
            return
        else:
            self.buf.append(line)
        if self.buf and self.multiline == NONE:
            text = "".join(self.buf)
            self.buf.clear()
            if text:
                self._send(text)

    def _print(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _command(self, line: str) -> bool:
        """Slash commands; True when the line was consumed (False: treat it as a message)."""
        args = line.split()
        cmd = args[0]
        if line.startswith("/list"):
            self._list()
        elif line.startswith("/load"):
            self._load(args)
        elif line.startswith("/save"):
            self._save(args)
        elif line.startswith("/clear"):
            self.opts.messages = []
            if self.opts.system:
                self.opts.messages.append({"role": "system", "content": self.opts.system})
            self._print("Cleared session context")
        elif line.startswith("/set"):
            self._set(args)
        elif line.startswith("/show"):
            self._show(args)
        elif line.startswith(("/help", "/?")):
            self._help(args)
        elif line.startswith(("/exit", "/bye")):
            raise ExitRepl
        else:
            if self.opts.multimodal and any(f.startswith(cmd) for f in _IMAGE_RE.findall(line)):
                return False
            self._print(f"Unknown command '{cmd}'. Type /? for help")
        return True

    def _help(self, args: list[str]) -> None:
        if len(args) > 1:
            topic = args[1]
            if topic in ("set", "/set"):
                self.err.write(USAGE_SET)
            elif topic in ("show", "/show"):
                self.err.write(USAGE_SHOW)
            elif topic in ("shortcut", "shortcuts"):
                self.err.write(USAGE_SHORTCUTS)
        else:
            self.err.write(USAGE + (USAGE_IMAGES if self.opts.multimodal else "") + "\n")
        self.err.flush()

    def _set_system(self, text: str) -> None:
        self.opts.system = text
        msg = {"role": "system", "content": text}
        if self.opts.messages and self.opts.messages[-1].get("role") == "system":
            self.opts.messages[-1] = msg
        else:
            self.opts.messages.append(msg)
        self._print("Set system message.")

    def _set(self, args: list[str]) -> None:
        if len(args) < 2:
            self.err.write(USAGE_SET)
            return
        what = args[1]
        o = self.opts
        if what == "history":
            self.history_enabled = True
        elif what == "nohistory":
            self.history_enabled = False
        elif what in ("wordwrap", "nowordwrap"):
            o.word_wrap = what == "wordwrap"
            self._print(f"Set '{what}' mode.")
        elif what in ("verbose", "quiet"):
            o.verbose = what == "verbose"
            self._print(f"Set '{what}' mode.")
        elif what == "think":
            level = args[2] if len(args) > 2 else ""
            o.think = level or True
            self.explicit_think = True
            self._warn_thinking()
            self._print(f"Set 'think' mode to '{level}'." if level else "Set 'think' mode.")
        elif what == "nothink":
            o.think = False
            self.explicit_think = True
            self._warn_thinking()
            self._print("Set 'nothink' mode.")
        elif what == "format":
            if len(args) < 3 or args[2] != "json":
                self._print("Invalid or missing format. For 'json' mode use '/set format json'")
            else:
                o.format = "json"
                self._print("Set format to 'json' mode.")
        elif what == "noformat":
            o.format = ""
            self._print("Disabled format.")
        elif what == "parameter":
            if len(args) < 4:
                self.err.write(USAGE_PARAMETERS)
                return
            name, values = args[2], args[3:]
            try:
                value = parse_param(name, values)
            except ValueError as e:
                self._print(f'Couldn\'t set parameter: "{e}"')
                return
            self._print(f"Set parameter '{name}' to '{', '.join(values)}'")
            o.options[name] = value
        elif what == "system":
            if len(args) < 3:
                self.err.write(USAGE_SET)
                return
            text = " ".join(args[2:])
            if text.startswith('"""'):
                text = text[3:]
                if text.endswith('"""'):
                    self._set_system(text[:-3])
                    return
                self.buf = [text, "\n"] if text else []
                self.multiline = SYSTEM_BLOCK
                self.use_alt = True
                return
            self._set_system(text)
        else:
            self._print(f"Unknown command '/set {what}'. Type /? for help")

    def _warn_thinking(self) -> None:
        try:
            info = self.session.show(_bare(self.opts))
        except ClientError:
            return
        if "thinking" not in (info.get("capabilities") or []):
            self.err.write(f'warning: model "{self.opts.model}" does not support thinking '
                           "output\n")

    def _show(self, args: list[str]) -> None:
        if len(args) < 2:
            self.err.write(USAGE_SHOW)
            return
        try:
            resp = self.session.show(self.opts)
        except ClientError:
            self._print("error: couldn't get model")
            raise
        what = args[1]
        if what == "info":
            self.err.write(info_text(resp))
        elif what == "license":
            self._print(resp.get("license") or "No license was specified for this model.")
        elif what == "modelfile":
            self._print(resp.get("modelfile", ""))
        elif what == "parameters":
            self.out.write(parameters_text(resp.get("parameters") or "", self.opts.options))
        elif what == "system":
            if self.opts.system:
                self._print(self.opts.system + "\n")
            elif resp.get("system"):
                self._print(resp["system"] + "\n")
            else:
                self._print("No system message was specified for this model.")
        elif what == "template":
            self._print(resp.get("template")
                        or "No prompt template was specified for this model.")
        else:
            self._print(f"Unknown command '/show {what}'. Type /? for help")

    def _load(self, args: list[str]) -> None:
        if len(args) != 2:
            self._print("Usage:\n  /load <modelname>")
            return
        orig = self.opts.copy()
        self.opts.model = args[1]
        self.opts.messages = []
        self._print(f"Loading model '{self.opts.model}'")
        try:
            info = self.session.show(_bare(self.opts))
            caps = list(info.get("capabilities") or [])
            if not self.explicit_think:
                self.opts.think = True if "thinking" in caps else None
            self.opts.parent_model = (info.get("details") or {}).get("parent_model") or ""
            self.opts.multimodal = "vision" in caps
            self.session.load(self.opts)
        except ClientError as e:
            if "not found" in e.message:
                self._print(f"Couldn't find model '{self.opts.model}'")
                self.opts = orig
                return
            if "does not support thinking" in e.message:
                self._print(f"error: {e.message}")
                return
            raise

    def _save(self, args: list[str]) -> None:
        if len(args) != 2:
            self._print("Usage:\n  /save <modelname>")
            return
        try:
            self.session.create(args[1], self.opts)
        except ClientError as e:
            if "invalid model name" in e.message:
                self._print(f"error: The model name '{args[1]}' is invalid")
                return
            raise
        self._print(f"Created new model '{args[1]}'")

    def _list(self) -> None:
        from ollamapy.cli.format import human_bytes, human_time, parse_time, print_table

        data = self.session.client.request("GET", "/api/tags") or {}
        rows = [[m.get("name", ""), str(m.get("digest", ""))[:12], human_bytes(m.get("size", 0)),
                 human_time(parse_time(m.get("modified_at")))]
                for m in data.get("models") or []]
        print_table(["NAME", "ID", "SIZE", "MODIFIED"], rows)

    def _send(self, text: str) -> None:
        msg: JsonObject = {"role": "user", "content": text}
        if self.opts.multimodal:
            content, images = extract_images(text, self.err)
            msg["content"] = content
            if images:
                msg["images"] = images
        self.opts.messages.append(msg)
        try:
            reply = self.session.chat(self.opts)
        except ClientError as e:
            if "does not support thinking" in e.message or "invalid think value" in e.message:
                self._print(f"error: {e.message}")
                return
            raise
        if reply is not None:
            self.opts.messages.append(reply)

    # ------------------------------------------------------------------------ the terminal
    def loop(self) -> None:
        reader = LineReader(enabled=not _no_history())
        self.history_enabled = reader.enabled
        try:
            while True:
                reader.enabled = self.history_enabled
                try:
                    line = reader.read(self.prompt())
                except EOFError:
                    self._print()
                    return
                except KeyboardInterrupt:
                    if not reader.partial():
                        self._print("\nUse Ctrl + d or /bye to exit.")
                    else:
                        self._print()
                    self.interrupt()
                    continue
                for part in _split_paste(line):
                    self.handle(part)
        except ExitRepl:
            return


def _split_paste(line: str) -> list[str]:
    """A bracketed paste can hand us several lines at once: treat them as one message."""
    if "\n" not in line:
        return [line]
    return ['"""' + line + '"""'] if not line.startswith('"""') else line.split("\n")


def _bare(opts: Any) -> Any:
    b = opts.copy()
    b.system = ""
    b.options = {}
    return b


def _no_history() -> bool:
    from ollamapy.config import parse_bool

    return parse_bool(os.environ.get("OLLAMA_NOHISTORY", ""))


def info_text(resp: JsonObject) -> str:
    """`/show info`: the Model and Capabilities sections of `ollamapy show`."""
    details = resp.get("details") or {}
    mi = resp.get("model_info") or {}
    arch = str(mi.get("general.architecture") or details.get("family") or "")
    rows = [("architecture", arch), ("parameters", details.get("parameter_size", "")),
            ("context length", mi.get(f"{arch}.context_length", "")),
            ("embedding length", mi.get(f"{arch}.embedding_length", "")),
            ("quantization", details.get("quantization_level", ""))]
    lines = ["  Model"]
    w = max(len(k) for k, _ in rows)
    lines += [f"    {k:<{w}}    {v}" for k, v in rows if v not in ("", None)]
    caps = resp.get("capabilities") or []
    if caps:
        lines += ["", "  Capabilities"] + [f"    {c}" for c in caps]
    return "\n".join(lines) + "\n\n"


class LineReader:
    """input() with GNU readline editing and Ollama's history file (~/.ollama/history)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(os.path.expanduser("~/.ollama/history"))
        try:
            import readline
        except ImportError:  # pragma: no cover - platforms without readline
            self.rl = None
            return
        self.rl = readline
        readline.set_auto_history(False)
        readline.set_history_length(HISTORY_LIMIT)
        if enabled:
            try:
                readline.read_history_file(self.path)
            except (OSError, ValueError):
                pass

    def read(self, prompt: str) -> str:
        line = input(prompt)
        if self.rl is not None and self.enabled and line.strip():
            self.rl.add_history(line)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.rl.write_history_file(self.path)
            except OSError:
                pass
        return line

    def partial(self) -> str:
        if self.rl is None:
            return ""
        try:
            return str(self.rl.get_line_buffer())
        except Exception:
            return ""
