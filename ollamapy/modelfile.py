"""Modelfile parsing and rendering, following Ollama's `parser/parser.go` rune-by-rune state
machine (so quoting, comments and error line numbers match), plus typed PARAMETER conversion."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ollamapy import options as opts
from ollamapy.gofmt import ParamValue, format_value, parse_param
from ollamapy.inference.jsontypes import JsonObject

COMMANDS = ("from", "license", "template", "system", "adapter", "draft", "renderer", "parser",
            "parameter", "message", "requires")
ROLES = ("system", "user", "assistant")
ERR_COMMAND = ('command must be one of "from", "license", "template", "system", "adapter", '
               '"draft", "renderer", "parser", "parameter", "message", or "requires"')
ERR_ROLE = 'message role must be one of "system", "user", or "assistant"'


class ModelfileError(ValueError):
    """A Modelfile syntax or parameter error, worded like Ollama's."""


@dataclass(frozen=True)
class Command:
    name: str    # "model" for FROM; lower-case instruction or the PARAMETER name
    args: str    # for MESSAGE: "<role>: <content>"

    def __str__(self) -> str:
        if self.name == "model":
            return f"FROM {self.args}"
        if self.name in ("license", "template", "system", "adapter", "renderer", "parser",
                         "requires", "draft"):
            return f"{self.name.upper()} {quote(self.args)}"
        if self.name == "message":
            role, _, msg = self.args.partition(": ")
            return f"MESSAGE {role} {quote(msg)}"
        return f"PARAMETER {self.name} {quote(self.args)}"


@dataclass
class Modelfile:
    commands: list[Command] = field(default_factory=list)

    def __str__(self) -> str:
        return "".join(f"{c}\n" for c in self.commands)


def quote(s: str) -> str:
    if "\n" in s or s.startswith(" ") or s.endswith(" "):
        if '"' in s:
            return f'"""{s}"""'
        return f'"{s}"'
    return s


def unquote(s: str) -> tuple[str, bool]:
    if len(s) >= 3 and s[:3] == '"""':
        if len(s) >= 6 and s[-3:] == '"""':
            return s[3:-3], True
        return "", False
    if len(s) >= 1 and s[0] == '"':
        if len(s) >= 2 and s[-1] == '"':
            return s[1:-1], True
        return "", False
    return s, True


_NIL, _NAME, _VALUE, _PARAM, _MESSAGE, _COMMENT = range(6)


def _alpha(r: str) -> bool:
    return ("a" <= r <= "z") or ("A" <= r <= "Z")


def _space(r: str) -> bool:
    return r in (" ", "\t")


def _newline(r: str) -> bool:
    return r in ("\r", "\n")


class _EOF(Exception):
    pass


def _next_state(r: str, cs: int) -> tuple[int, str]:
    if cs == _NIL:
        if r == "#":
            return _COMMENT, ""
        if _space(r) or _newline(r):
            return _NIL, ""
        return _NAME, r
    if cs == _NAME:
        if _alpha(r):
            return _NAME, r
        if _space(r):
            return _VALUE, ""
        raise ModelfileError(ERR_COMMAND)
    if cs == _VALUE:
        if _newline(r) or _space(r):
            return _NIL, r
        return _VALUE, r
    if cs == _PARAM:
        if _alpha(r) or (r.isascii() and r.isdigit()) or r == "_":
            return _PARAM, r
        if _space(r):
            return _VALUE, ""
        raise _EOF
    if cs == _MESSAGE:
        if _alpha(r):
            return _MESSAGE, r
        if _space(r):
            return _VALUE, ""
        raise _EOF
    if _newline(r):
        return _NIL, ""
    return _COMMENT, ""


def _printable(r: str) -> bool:
    return r != "" and (r.isprintable() or r == " ")


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data[1:] if data.startswith("\ufeff") else data
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    return data.decode("utf-8", errors="replace")


def parse(data: bytes | str) -> Modelfile:
    """Parse Modelfile text; raises ModelfileError with Ollama's messages."""
    text = _decode(data)
    mf = Modelfile()
    cur = _NIL
    line = 1
    buf: list[str] = []
    name = ""
    role = ""
    for r in text:
        if _newline(r):
            line += 1
        try:
            nxt, r2 = _next_state(r, cur)
        except _EOF:
            raise ModelfileError(f"unexpected EOF: {''.join(buf)}") from None
        except ModelfileError as e:
            raise ModelfileError(f"(line {line}): {e}") from None
        if nxt != cur:
            if cur == _NAME:
                word = "".join(buf)
                if word.lower() not in COMMANDS:
                    raise ModelfileError(f"(line {line}): {ERR_COMMAND}")
                s = word.lower()
                if s == "from":
                    name = "model"
                elif s == "parameter":
                    nxt = _PARAM
                elif s == "message":
                    nxt = _MESSAGE
                    name = s
                else:
                    name = s
            elif cur == _PARAM:
                name = "".join(buf)
            elif cur == _MESSAGE:
                word = "".join(buf)
                if word not in ROLES:
                    raise ModelfileError(f"(line {line}): {ERR_ROLE}")
                role = word
            elif cur == _VALUE:
                s, ok = unquote("".join(buf).strip())
                if not ok or _space(r2):
                    buf.append(r2)
                    continue
                if role:
                    s = f"{role}: {s}"
                    role = ""
                mf.commands.append(Command(name, s))
            buf = []
            cur = nxt
        if _printable(r2):
            buf.append(r2)
    if cur == _VALUE:
        s, ok = unquote("".join(buf).strip())
        if not ok:
            raise ModelfileError("unexpected EOF")
        if role:
            s = f"{role}: {s}"
        mf.commands.append(Command(name, s))
    elif cur not in (_NIL, _COMMENT):
        raise ModelfileError("unexpected EOF")
    if not any(c.name == "model" for c in mf.commands):
        raise ModelfileError("no FROM line")
    return mf


# ---------- parameters ----------
def format_param(name: str, vals: list[str]) -> ParamValue:
    """api.FormatParams for one key (ModelfileError with Go's text on bad input)."""
    try:
        return parse_param(name, vals)
    except ValueError as e:
        raise ModelfileError(str(e)) from None


@dataclass
class Parsed:
    """A Modelfile turned into /api/create fields (paths not yet resolved)."""

    from_: list[str] = field(default_factory=list)
    adapters: list[str] = field(default_factory=list)
    template: str | None = None
    system: str | None = None
    license: list[str] = field(default_factory=list)
    parameters: JsonObject = field(default_factory=dict)
    messages: list[dict[str, str]] = field(default_factory=list)
    requires: str | None = None
    renderer: str | None = None
    parser: str | None = None
    warnings: list[str] = field(default_factory=list)


def _semver_ok(v: str) -> bool:
    import re

    return re.fullmatch(r"v?(0|[1-9]\d*)(\.(0|[1-9]\d*)){0,2}(-[0-9A-Za-z.-]+)?"
                        r"(\+[0-9A-Za-z.-]+)?", v) is not None


def to_request(mf: Modelfile) -> Parsed:
    """Collect commands like Ollama's Modelfile.CreateRequest (minus file hashing)."""
    p = Parsed()
    for c in mf.commands:
        if c.name == "model":
            p.from_.append(c.args)
        elif c.name == "adapter":
            p.adapters.append(c.args)
        elif c.name == "template":
            p.template = c.args
        elif c.name == "system":
            p.system = c.args
        elif c.name == "license":
            p.license.append(c.args)
        elif c.name == "renderer":
            p.renderer = c.args
        elif c.name == "parser":
            p.parser = c.args
        elif c.name == "draft":
            raise ModelfileError("DRAFT is not supported")
        elif c.name == "requires":
            if not _semver_ok(c.args):
                raise ModelfileError("requires must be a valid semver (e.g. 0.14.0)")
            p.requires = c.args.removeprefix("v")
        elif c.name == "message":
            role, _, msg = c.args.partition(": ")
            p.messages.append({"role": role, "content": msg})
        else:
            key = c.name
            if key in opts.DEPRECATED_PARAMETERS:
                p.warnings.append(f"warning: parameter {key} is deprecated")
                continue
            v = format_param(key, [c.args])
            if isinstance(v, list) and isinstance(p.parameters.get(key), list):
                p.parameters[key] = p.parameters[key] + v
            else:
                p.parameters[key] = v
    return p


# ---------- rendering a stored model (show --modelfile) ----------
def go_sharp_value(v: Any) -> str:
    """Go's %#v (used by show's `parameters`): strings quoted, numbers as %v."""
    if isinstance(v, str):
        import json

        return json.dumps(v, ensure_ascii=False)
    return format_value(v)


def parameter_lines(params: Mapping[str, Any]) -> str:
    """show's `parameters`: '%-30s %#v' per value, list values one line each."""
    out: list[str] = []
    for k, v in params.items():
        for item in (v if isinstance(v, list) else [v]):
            out.append(f"{k:<30} {go_sharp_value(item)}")
    return "\n".join(out)


def render_model(*, short_name: str, model_path: str, adapters: Iterable[str] = (),
                 projectors: Iterable[str] = (), template: str | None = None,
                 system: str | None = None, params: Mapping[str, Any] | None = None,
                 licenses: Iterable[str] = (), messages: Iterable[Mapping[str, Any]] = (),
                 renderer: str = "", parser: str = "") -> str:
    """The `modelfile` field of /api/show (Ollama's header + Model.String())."""
    cmds = [Command("model", model_path)]
    cmds += [Command("adapter", a) for a in adapters]
    cmds += [Command("model", p) for p in projectors]
    if template:
        cmds.append(Command("template", template))
    if system:
        cmds.append(Command("system", system))
    if renderer:
        cmds.append(Command("renderer", renderer))
    if parser:
        cmds.append(Command("parser", parser))
    for k, v in (params or {}).items():
        for item in (v if isinstance(v, list) else [v]):
            cmds.append(Command(k, format_value(item)))
    cmds += [Command("license", t) for t in licenses]
    cmds += [Command("message", f"{m.get('role', '')}: {m.get('content', '')}")
             for m in messages]
    head = ('# Modelfile generated by "ollama show"\n'
            "# To build a new Modelfile based on this, replace FROM with:\n"
            f"# FROM {short_name}\n\n")
    return head + str(Modelfile(cmds))
