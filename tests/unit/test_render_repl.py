"""The REPL state machine (multi-line blocks, slash commands, history of the chat) and the pure
decisions of `ollamapy run`, driven without a terminal or a server."""

from __future__ import annotations

import io
from typing import Any

import click
import pytest

from ollamapy.cli import repl as repl_mod
from ollamapy.cli.client import ClientError
from ollamapy.cli.repl import ExitRepl, Repl
from ollamapy.cli.run import (
    RunOptions,
    chat_request,
    format_field,
    generate_request,
    infer_think,
    is_interactive,
    parse_keepalive,
    parse_think,
)
from ollamapy.gofmt import parse_param as format_params


class FakeSession:
    def __init__(self) -> None:
        self.client: Any = None
        self.chats: list[list[dict[str, Any]]] = []
        self.loaded: list[str] = []
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.models = {"smollm2:135m": {"capabilities": ["completion"],
                                        "parameters": 'stop                           "<x>"',
                                        "template": "{{ .Prompt }}", "license": "MIT"}}

    def chat(self, opts: RunOptions) -> dict[str, Any] | None:
        self.chats.append([dict(m) for m in opts.messages])
        return {"role": "assistant", "content": f"reply {len(self.chats)}"}

    def show(self, opts: RunOptions) -> dict[str, Any]:
        if opts.model not in self.models:
            raise ClientError(f"model '{opts.model}' not found", 404)
        return self.models[opts.model]

    def load(self, opts: RunOptions) -> None:
        self.loaded.append(opts.model)

    def create(self, name: str, opts: RunOptions) -> None:
        if "!" in name:
            raise ClientError("invalid model name", 400)
        self.created.append((name, chat_request(opts)))


def make() -> tuple[Repl, FakeSession, io.StringIO, io.StringIO]:
    s = FakeSession()
    out, err = io.StringIO(), io.StringIO()
    return Repl(s, RunOptions(model="smollm2:135m"), out=out, err=err), s, out, err


def test_message_and_history() -> None:
    r, s, _, _ = make()
    r.handle("hello")
    r.handle("again")
    assert s.chats[0] == [{"role": "user", "content": "hello"}]
    assert s.chats[1][-1] == {"role": "user", "content": "again"}
    assert s.chats[1][1] == {"role": "assistant", "content": "reply 1"}


def test_multiline_block() -> None:
    r, s, _, _ = make()
    r.handle('"""first')
    assert r.prompt() == "... " and not s.chats
    r.handle("second")
    r.handle('third"""')
    assert r.prompt() == ">>> "
    assert s.chats[0][-1]["content"] == "first\nsecond\nthird"
    r.handle('"""one line"""')
    assert s.chats[1][-1]["content"] == "one line"


def test_set_parameter_messages_and_show_parameters() -> None:
    r, _, out, err = make()
    r.handle("/set parameter temperature 0")
    r.handle("/set parameter stop <a> <b>")
    r.handle("/set parameter num_ctx abc")
    r.handle("/set parameter nope 1")
    r.handle("/set parameter seed")
    text = out.getvalue()
    assert "Set parameter 'temperature' to '0'\n" in text
    assert "Set parameter 'stop' to '<a>, <b>'\n" in text
    assert "Couldn't set parameter: \"invalid int value [abc]\"\n" in text
    assert "Couldn't set parameter: \"unknown parameter 'nope'\"\n" in text
    assert "Available Parameters:" in err.getvalue()
    assert r.opts.options == {"temperature": 0, "stop": ["<a>", "<b>"]}
    r.handle("/show parameters")
    assert ("Model defined parameters:\n  stop                           \"<x>\"\n\n"
            "User defined parameters:\n  temperature                    0\n") in out.getvalue()
    r.handle("hi")
    assert chat_request(r.opts)["options"] == {"temperature": 0, "stop": ["<a>", "<b>"]}


def test_set_system_single_and_multiline() -> None:
    r, _, out, _ = make()
    r.handle("/set system You are terse.")
    assert r.opts.messages == [{"role": "system", "content": "You are terse."}]
    r.handle('/set system """Be')
    r.handle('kind."""')
    assert r.opts.messages == [{"role": "system", "content": "Be\nkind."}]  # replaced
    assert out.getvalue().count("Set system message.") == 2
    r.handle("/show system")
    assert "Be\nkind.\n" in out.getvalue()
    r.handle("/clear")
    assert r.opts.messages == [{"role": "system", "content": "Be\nkind."}]
    assert "Cleared session context" in out.getvalue()


def test_set_modes() -> None:
    r, _, out, _ = make()
    for cmd in ("format json", "noformat", "verbose", "quiet", "wordwrap", "nowordwrap",
                "think", "think high", "nothink", "bogus", "format yaml"):
        r.handle(f"/set {cmd}")
    assert out.getvalue().splitlines() == [
        "Set format to 'json' mode.", "Disabled format.", "Set 'verbose' mode.",
        "Set 'quiet' mode.", "Set 'wordwrap' mode.", "Set 'nowordwrap' mode.",
        "Set 'think' mode.", "Set 'think' mode to 'high'.", "Set 'nothink' mode.",
        "Unknown command '/set bogus'. Type /? for help",
        "Invalid or missing format. For 'json' mode use '/set format json'"]
    assert r.opts.think is False and r.opts.word_wrap is False and r.opts.verbose is False


def test_think_warning_for_non_thinking_model() -> None:
    r, _, _, err = make()
    r.handle("/set think")
    assert 'warning: model "smollm2:135m" does not support thinking output' in err.getvalue()


def test_show_variants_and_unknown_commands() -> None:
    r, _, out, err = make()
    for cmd in ("/show license", "/show template", "/show modelfile", "/show nope", "/foo",
                "/show"):
        r.handle(cmd)
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["MIT", "{{ .Prompt }}"]
    assert "Unknown command '/show nope'. Type /? for help" in lines
    assert "Unknown command '/foo'. Type /? for help" in lines
    assert "/show parameters   Show parameters for this model" in err.getvalue()
    r.handle("/?")
    assert "/bye            Exit" in err.getvalue()
    assert 'Use """ to begin a multi-line message.' in err.getvalue()


def test_load_and_save() -> None:
    r, s, out, _ = make()
    r.handle("/load missing:1b")
    assert "Loading model 'missing:1b'\nCouldn't find model 'missing:1b'\n" in out.getvalue()
    assert r.opts.model == "smollm2:135m"
    r.handle("hello")
    r.handle("/set parameter temperature 0.5")
    r.handle("/save mine")
    assert "Created new model 'mine'" in out.getvalue()
    name, body = s.created[0]
    assert name == "mine" and body["options"] == {"temperature": 0.5}
    r.handle("/save bad!")
    assert "error: The model name 'bad!' is invalid" in out.getvalue()
    r.handle("/load smollm2:135m")
    assert s.loaded == ["smollm2:135m"] and r.opts.messages == []


def test_bye_and_interrupt() -> None:
    r, _, _, _ = make()
    r.handle('"""open block')
    r.interrupt()
    assert r.prompt() == ">>> " and r.buf == []
    with pytest.raises(ExitRepl):
        r.handle("/bye")
    with pytest.raises(ExitRepl):
        r.handle("/exit")


def test_paste_becomes_one_message() -> None:
    assert repl_mod._split_paste("a\nb") == ['"""a\nb"""']
    r, s, _, _ = make()
    for part in repl_mod._split_paste("line one\nline two"):
        r.handle(part)
    assert s.chats[0][-1]["content"] == "line one\nline two"


def test_format_params_types() -> None:
    assert format_params("temperature", ["0.7"]) == 0.7
    assert format_params("num_ctx", ["2048"]) == 2048
    assert format_params("use_mmap", ["false"]) is False
    assert format_params("stop", ["a", "b"]) == ["a", "b"]
    with pytest.raises(ValueError, match="invalid float value"):
        format_params("top_p", ["x"])


# -------------------------------------------------------------------- run's pure decisions

def test_parse_think() -> None:
    assert parse_think(None) is None
    assert parse_think("true") is True and parse_think("") is True
    assert parse_think("false") is False
    assert parse_think("low") == "low"
    with pytest.raises(click.UsageError, match="invalid value for --think"):
        parse_think("sometimes")


def test_parse_keepalive_and_format() -> None:
    assert parse_keepalive("5m") == "5m" and parse_keepalive(None) is None
    assert parse_keepalive("-1s") == "-1s"
    with pytest.raises(click.UsageError, match="invalid duration"):
        parse_keepalive("soon")
    with pytest.raises(click.UsageError, match="missing unit"):
        parse_keepalive("300")
    assert format_field("") is None and format_field("json") == "json"
    assert format_field('{"type": "object"}') == {"type": "object"}
    with pytest.raises(click.UsageError, match="invalid format"):
        format_field("yaml")


def test_interactive_decision_and_think_inference() -> None:
    assert is_interactive(False, True, True)
    assert not is_interactive(True, True, True)
    assert not is_interactive(False, False, True)
    assert not is_interactive(False, True, False)
    o = RunOptions(model="m", think=False)
    assert infer_think(["completion", "thinking"], o, explicit=True) is False
    assert infer_think(["completion", "thinking"], o, explicit=False) is True
    assert infer_think(["completion"], o, explicit=False) is None


def test_request_bodies() -> None:
    o = RunOptions(model="m", prompt="hi", format="json", keep_alive="10m", think="low",
                   options={"temperature": 0}, system="sys")
    assert generate_request(o) == {"model": "m", "prompt": "hi", "format": "json",
                                   "keep_alive": "10m", "think": "low",
                                   "options": {"temperature": 0}, "system": "sys"}
    o.messages = [{"role": "user", "content": "x"}]
    assert chat_request(RunOptions(model="m", messages=o.messages)) == {
        "model": "m", "messages": [{"role": "user", "content": "x"}]}


def test_extract_images(tmp_path) -> None:
    import base64

    png = tmp_path / "my pic.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
    fake = tmp_path / "fake.jpg"
    fake.write_text("not an image")
    err = io.StringIO()
    escaped = str(png).replace(" ", "\\ ")
    text, images = repl_mod.extract_images(f"what is in {escaped} ?", err)
    assert text == "what is in  ?"
    assert images == [base64.b64encode(png.read_bytes()).decode()]
    assert f"Added image '{png}'" in err.getvalue()
    # A path that does not exist is just text; a file that is not an image is an error.
    assert repl_mod.extract_images("see /nope/x.png", err) == ("see /nope/x.png", [])
    with pytest.raises(ClientError, match="invalid image type"):
        repl_mod.extract_images(f"look {fake}", err)


def test_client_error_text() -> None:
    from ollamapy.cli.client import error_message, user_agent

    assert error_message(404, b'{"error":"model \'x\' not found"}') == "model 'x' not found"
    assert error_message(401, b'{"error":{"message":"unauthorized","type":"api_error"}}') == (
        "unauthorized")
    assert error_message(404, b"404 page not found") == "404 page not found"
    assert error_message(401, b"", "Unauthorized") == "unauthorized"  # HEAD: no body
    assert error_message(502, b"") == "HTTP 502"
    assert user_agent().startswith("ollamapy/")
