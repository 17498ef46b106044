"""A Go `text/template` interpreter for the subset Ollama's model templates use.

Why our own: every model pulled from Ollama's registry ships its prompt format as a Go template, and
rendering it byte-for-byte like Ollama is what makes the model behave as it does under Ollama.
Semantics follow Go: `{{-`/`-}}` trimming, `missingkey=zero` (missing keys are nil and print
`<no value>`), sorted map ranges, Go truthiness, Go value printing, `printf` verbs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from ollamapy.errors import BadRequest, LimitExceeded
from ollamapy.gofmt import format_float


class TemplateError(Exception):
    """Parse or execution error (Ollama reports template errors to the client)."""


class TemplateLimitError(TemplateError):
    """A template went past one of the configured bounds (output, steps, width, depth, size)."""


@dataclass(frozen=True)
class Limits:
    """Bounds on one template's parse and render, so a request or model template can neither
    run unbounded nor allocate unbounded memory. Defaults sit far above real model templates."""

    max_output: int = 16 * 1024 * 1024   # characters produced by one render
    max_steps: int = 2_000_000           # nodes executed + range iterations per render
    max_width: int = 100_000             # printf width / precision
    max_depth: int = 100                 # nesting of blocks and parentheses
    max_nodes: int = 4096                # actions + text pieces in one template

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        from ollamapy.config import read_setting

        return cls(*(read_setting(f"OLLAMAPY_TEMPLATE_MAX_{n}", environ)
                     for n in ("OUTPUT", "STEPS", "WIDTH", "DEPTH", "NODES")))


_limits: Limits | None = None


def limits() -> Limits:
    """The process-wide limits (read from the environment on first use)."""
    global _limits
    if _limits is None:
        _limits = Limits.from_env(os.environ)
    return _limits


def set_limits(value: Limits | None) -> None:
    """Replace the process-wide limits (None: read the environment again on next use)."""
    global _limits
    _limits = value


# ---------------------------------------------------------------- values


class JsonObj(dict[str, Any]):
    """A JSON object seen through Go struct field names; prints as compact JSON (like Ollama's
    api.Tool / ToolCallFunctionArguments String() methods)."""


class JsonList(list[Any]):
    """A JSON array that prints as compact JSON (api.Tools)."""


_SPECIAL_FIELDS = {"Defs": "$defs", "ID": "id", "AnyOf": "anyOf"}


def _snake(name: str) -> str:
    out = []
    for i, c in enumerate(name):
        if c.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(c.lower())
    return "".join(out)


def wrap_json(v: Any) -> Any:
    """Plain JSON data -> values the interpreter prints/accesses like Ollama's Go structs."""
    if isinstance(v, dict) and not isinstance(v, JsonObj):
        return JsonObj((k, wrap_json(x)) for k, x in v.items())
    if isinstance(v, list) and not isinstance(v, JsonList):
        return [wrap_json(x) for x in v]
    return v


def go_json(v: Any) -> str:
    """Go's json.Marshal: compact, HTML characters escaped."""
    s = json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    return (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _json_default(o: Any) -> Any:
    raise TypeError(f"cannot marshal {type(o).__name__}")


def go_str(v: Any) -> str:
    """fmt.Sprint of one value as text/template prints it."""
    if v is None:
        return "<no value>"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return format_float(v)
    if isinstance(v, JsonObj | JsonList):
        return go_json(v)
    return _go_inner(v)


def _go_inner(v: Any) -> str:
    if v is None:
        return "<nil>"
    if isinstance(v, JsonObj | JsonList):
        return go_json(v)
    if isinstance(v, list | tuple):
        return "[" + " ".join(_go_inner(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{_go_inner(k)}:{_go_inner(v[k])}" for k in sorted(v)) + "]"
    return go_str(v)


def truth(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    if isinstance(v, str | list | tuple | dict):
        return len(v) > 0
    return True


def field_of(obj: Any, name: str) -> Any:
    """`.Name` on a value: map key (Go spelling, then JSON spelling); missing -> nil."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        if name in obj:
            return obj[name]
        if isinstance(obj, JsonObj):
            for key in (_SPECIAL_FIELDS.get(name), _snake(name), name[:1].lower() + name[1:],
                        name.lower()):
                if key is not None and key in obj:
                    return obj[key]
        return None
    attr = getattr(obj, name, None)
    if attr is None:
        raise TemplateError(f"can't evaluate field {name} in type {type(obj).__name__}")
    return attr


# ---------------------------------------------------------------- lexing


@dataclass
class Tok:
    kind: str      # field dot var string number bool nil ident ( ) | := = , char
    value: Any
    spaced: bool   # preceded by whitespace


_SPACE = " \t\r\n"
_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break",
             "continue"}


def _split(src: str) -> Iterator[tuple[str, str]]:
    """Yield ("text", s) and ("action", body) pieces, applying trim markers."""
    i = 0
    n = len(src)
    trim_next = False
    while i < n:
        j = src.find("{{", i)
        if j < 0:
            text = src[i:]
            if trim_next:
                text = text.lstrip(_SPACE)
            yield ("text", text)
            return
        text = src[i:j]
        if trim_next:
            text = text.lstrip(_SPACE)
        k = j + 2
        if src.startswith("-", k) and k + 1 < n and src[k + 1] in _SPACE:
            text = text.rstrip(_SPACE)
            k += 2
        if text:
            yield ("text", text)
        body, end, trim_next = _action_end(src, k)
        yield ("action", body)
        i = end


def _action_end(src: str, k: int) -> tuple[str, int, bool]:
    """Find the closing delimiter, skipping quoted strings and comments."""
    i = k
    n = len(src)
    m0 = k
    while m0 < n and src[m0] in _SPACE:
        m0 += 1
    if src.startswith("/*", m0):
        close = src.find("*/", k)
        if close < 0:
            raise TemplateError("unclosed comment")
        rest = close + 2
        m = rest
        while m < n and src[m] in _SPACE:
            m += 1
        if src.startswith("-}}", m) and m > rest:
            return "", m + 3, True
        if src.startswith("}}", m):
            return "", m + 2, False
        raise TemplateError("comment ends before closing delimiter")
    while i < n:
        c = src[i]
        if c in "\"'`":
            q = c
            i += 1
            while i < n and src[i] != q:
                if src[i] == "\\" and q != "`":
                    i += 1
                i += 1
            i += 1
            continue
        if src.startswith("}}", i):
            if i > k and src[i - 1] == "-" and i - 2 >= k and src[i - 2] in _SPACE:
                return src[k:i - 1], i + 2, True
            return src[k:i], i + 2, False
        i += 1
    raise TemplateError("unclosed action")


def _lex(body: str) -> list[Tok]:
    toks: list[Tok] = []
    i = 0
    n = len(body)
    spaced = True
    while i < n:
        c = body[i]
        if c in _SPACE:
            spaced = True
            i += 1
            continue
        if c == '"':
            j = i + 1
            while j < n and body[j] != '"':
                j += 2 if body[j] == "\\" else 1
            raw = body[i:j + 1]
            try:
                toks.append(Tok("string", json.loads(raw), spaced))
            except ValueError:
                toks.append(Tok("string", raw[1:-1].encode().decode("unicode_escape"), spaced))
            i = j + 1
        elif c == "`":
            j = body.index("`", i + 1)
            toks.append(Tok("string", body[i + 1:j], spaced))
            i = j + 1
        elif c == "'":
            j = body.index("'", i + 1)
            s = body[i + 1:j].encode().decode("unicode_escape")
            toks.append(Tok("number", ord(s), spaced))
            i = j + 1
        elif c == ".":
            j = i + 1
            while j < n and (body[j].isalnum() or body[j] == "_"):
                j += 1
            if j == i + 1:
                toks.append(Tok("dot", None, spaced))
            else:
                toks.append(Tok("field", body[i + 1:j], spaced))
            i = j
        elif c == "$":
            j = i + 1
            while j < n and (body[j].isalnum() or body[j] == "_"):
                j += 1
            toks.append(Tok("var", body[i:j], spaced))
            i = j
        elif c.isdigit() or (c in "+-" and i + 1 < n and body[i + 1].isdigit()):
            j = i + 1
            while j < n and (body[j].isalnum() or body[j] in "._+-"):
                if body[j] in "+-" and body[j - 1] not in "eEpP":
                    break
                j += 1
            text = body[i:j].replace("_", "")
            try:
                val: Any = int(text, 0)
            except ValueError:
                try:
                    val = float(text)
                except ValueError:
                    raise TemplateError(f"bad number syntax: {text!r}") from None
            toks.append(Tok("number", val, spaced))
            i = j
        elif c.isalpha() or c == "_":
            j = i
            while j < n and (body[j].isalnum() or body[j] == "_"):
                j += 1
            word = body[i:j]
            if word in ("true", "false"):
                toks.append(Tok("bool", word == "true", spaced))
            elif word == "nil":
                toks.append(Tok("nil", None, spaced))
            else:
                toks.append(Tok("ident", word, spaced))
            i = j
        elif body.startswith(":=", i):
            toks.append(Tok(":=", None, spaced))
            i += 2
        elif c in "()|=,":
            toks.append(Tok(c, None, spaced))
            i += 1
        else:
            raise TemplateError(f"unexpected {c!r} in command")
        spaced = False
    return toks


# ---------------------------------------------------------------- AST


@dataclass
class Text:
    text: str


@dataclass
class Operand:
    kind: str                 # field dot var literal ident pipe
    value: Any = None         # var name / literal / ident / Pipe
    chain: list[str] = field(default_factory=list)


@dataclass
class Command:
    args: list[Operand]


@dataclass
class Pipe:
    decl: list[str]
    assign: bool              # "=" instead of ":="
    cmds: list[Command]


@dataclass
class Action:
    pipe: Pipe


@dataclass
class Branch:
    kind: str                 # if range with
    pipe: Pipe
    body: list[Any]
    else_body: list[Any] | None = None


@dataclass
class Loop:
    kind: str                 # break continue


def _idents(nodes: list[Any]) -> Iterator[str]:
    for n in nodes:
        if isinstance(n, Action):
            yield from _pipe_idents(n.pipe)
        elif isinstance(n, Branch):
            yield from _pipe_idents(n.pipe)
            yield from _idents(n.body)
            if n.else_body:
                yield from _idents(n.else_body)


def _pipe_idents(p: Pipe) -> Iterator[str]:
    for c in p.cmds:
        for a in c.args:
            if a.kind == "field":
                yield from a.chain
            elif a.kind == "var":
                yield a.value
                yield from a.chain
            elif a.kind == "pipe":
                yield from _pipe_idents(a.value)
                yield from a.chain
            else:
                yield from a.chain


class _Parser:
    def __init__(self, src: str, lim: Limits) -> None:
        self.pieces: list[tuple[str, str]] = []
        for piece in _split(src):
            self.pieces.append(piece)
            if len(self.pieces) > lim.max_nodes:
                raise TemplateLimitError(f"template has more than {lim.max_nodes} actions")
        self.pos = 0
        self.depth = 0
        self.max_depth = lim.max_depth

    def parse(self) -> list[Any]:
        nodes, stop = self._list()
        if stop is not None:
            raise TemplateError(f"unexpected {{{{{stop[0]}}}}}")
        return nodes

    def _list(self) -> tuple[list[Any], tuple[str, list[Tok]] | None]:
        nodes: list[Any] = []
        while self.pos < len(self.pieces):
            kind, body = self.pieces[self.pos]
            self.pos += 1
            if kind == "text":
                nodes.append(Text(body))
                continue
            if not body.strip():
                if body == "":
                    continue  # comment
                raise TemplateError("missing value for command")
            toks = _lex(body)
            head = toks[0]
            if head.kind == "ident" and head.value in ("end", "else"):
                return nodes, (head.value, toks[1:])
            if head.kind == "ident" and head.value in ("if", "range", "with"):
                nodes.append(self._branch(head.value, toks[1:]))
            elif head.kind == "ident" and head.value in ("break", "continue"):
                nodes.append(Loop(head.value))
            elif head.kind == "ident" and head.value in ("define", "template", "block"):
                raise TemplateError(f"{head.value} is not supported")
            else:
                nodes.append(Action(_PipeParser(toks, self.max_depth).pipe()))
        return nodes, None

    def _branch(self, kind: str, toks: list[Tok]) -> Branch:
        self.depth += 1
        try:
            return self._branch_in(kind, toks)
        finally:
            self.depth -= 1

    def _branch_in(self, kind: str, toks: list[Tok]) -> Branch:
        if self.depth > self.max_depth:
            raise TemplateLimitError(f"template nesting deeper than {self.max_depth}")
        pipe = _PipeParser(toks, self.max_depth).pipe(allow_two=kind == "range")
        body, stop = self._list()
        if stop is None:
            raise TemplateError(f"unexpected EOF in {kind}")
        node = Branch(kind, pipe, body)
        if stop[0] == "else":
            rest = stop[1]
            if rest and rest[0].kind == "ident" and rest[0].value in ("if", "with"):
                # `else if` / `else with`: a nested branch that shares our {{end}}
                node.else_body = [self._branch(rest[0].value, rest[1:])]
                return node
            else_body, stop2 = self._list()
            if stop2 is None or stop2[0] != "end":
                raise TemplateError(f"expected end after else in {kind}")
            node.else_body = else_body
        return node


class _PipeParser:
    def __init__(self, toks: list[Tok], max_depth: int = 100) -> None:
        self.toks = toks
        self.i = 0
        self.depth = 0
        self.max_depth = max_depth

    def peek(self) -> Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def pipe(self, allow_two: bool = False, inner: bool = False) -> Pipe:
        decl: list[str] = []
        assign = False
        # variable declaration: $x := / $x = / $i, $v :=
        j = self.i
        names: list[str] = []
        while j < len(self.toks) and self.toks[j].kind == "var":
            names.append(self.toks[j].value)
            j += 1
            if j < len(self.toks) and self.toks[j].kind == "," and allow_two and len(names) == 1:
                j += 1
                continue
            break
        if names and j < len(self.toks) and self.toks[j].kind in (":=", "="):
            decl = names
            assign = self.toks[j].kind == "="
            self.i = j + 1
        cmds: list[Command] = []
        while True:
            args: list[Operand] = []
            while (t := self.peek()) is not None and t.kind not in ("|", ")"):
                args.append(self.operand())
            if not args:
                raise TemplateError("missing value for command")
            cmds.append(Command(args))
            t = self.peek()
            if t is None:
                break
            if t.kind == ")":
                if not inner:
                    raise TemplateError("unexpected right paren")
                break
            self.i += 1  # |
        return Pipe(decl, assign, cmds)

    def operand(self) -> Operand:
        t = self.toks[self.i]
        self.i += 1
        if t.kind == "field":
            op = Operand("field", chain=[t.value])
        elif t.kind == "dot":
            op = Operand("dot")
        elif t.kind == "var":
            op = Operand("var", t.value)
        elif t.kind in ("string", "number", "bool", "nil"):
            op = Operand("literal", t.value)
        elif t.kind == "ident":
            if t.value in _KEYWORDS:
                raise TemplateError(f"unexpected keyword {t.value}")
            op = Operand("ident", t.value)
        elif t.kind == "(":
            self.depth += 1
            if self.depth > self.max_depth:
                raise TemplateLimitError(f"template nesting deeper than {self.max_depth}")
            inner = self.pipe(inner=True)
            self.depth -= 1
            if self.peek() is None or self.peek().kind != ")":  # type: ignore[union-attr]
                raise TemplateError("unclosed left paren")
            self.i += 1
            op = Operand("pipe", inner)
        else:
            raise TemplateError(f"unexpected {t.kind} in operand")
        while (n := self.peek()) is not None and n.kind == "field" and not n.spaced:
            op.chain.append(n.value)
            self.i += 1
        return op


# ---------------------------------------------------------------- execution


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


def _sorted_keys(d: dict[Any, Any]) -> list[Any]:
    try:
        return sorted(d)
    except TypeError:
        return list(d)


def _basic_eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, str) != isinstance(b, str):
        return False
    return bool(a == b)


def _cmp(a: Any, b: Any) -> int:
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    if (isinstance(a, int | float) and isinstance(b, int | float)
            and not isinstance(a, bool) and not isinstance(b, bool)):
        return (a > b) - (a < b)
    raise TemplateError("incompatible types for comparison")


def _length(v: Any) -> int:
    if v is None:
        raise TemplateError("len of nil pointer")
    if isinstance(v, str | list | tuple | dict):
        return len(v)
    raise TemplateError(f"len of type {type(v).__name__}")


def _index(v: Any, *keys: Any) -> Any:
    for k in keys:
        if v is None:
            raise TemplateError("index of untyped nil")
        if isinstance(v, dict):
            v = v.get(k)
        elif isinstance(v, list | tuple | str):
            if not isinstance(k, int) or not 0 <= k < len(v):
                raise TemplateError(f"index out of range: {k}")
            v = v[k]
        else:
            raise TemplateError(f"can't index item of type {type(v).__name__}")
    return v


def _slice(v: Any, *idx: Any) -> Any:
    if not isinstance(v, str | list | tuple):
        raise TemplateError(f"can't slice item of type {type(v).__name__}")
    if len(idx) > 3:
        raise TemplateError("too many slice indexes")
    lo = idx[0] if idx else 0
    hi = idx[1] if len(idx) > 1 else len(v)
    if not (0 <= lo <= hi <= len(v)):
        raise TemplateError(f"slice index out of range: {lo}:{hi}")
    return v[lo:hi]


def _sprint(*args: Any) -> str:
    # fmt.Sprint: a space between operands when neither side is a string.
    out = ""
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out += " "
        out += go_str(a) if a is not None else "<nil>"
    return out


def _spec(flags: str, cap: int) -> tuple[str, int | None, int | None]:
    """`+-# 0` flags, width, precision of one printf verb, each number capped."""
    i = 0
    while i < len(flags) and flags[i] in "+-# 0":
        i += 1
    flag_chars, rest = flags[:i], flags[i:]
    width_text, dot, prec_text = rest.partition(".")
    width = prec = None
    if width_text.isdigit():
        width = int(width_text) if len(width_text) <= 18 else cap + 1
    if dot:
        prec = int(prec_text) if prec_text.isdigit() and len(prec_text) <= 18 else (
            0 if not prec_text.isdigit() else cap + 1)
    for what, v in (("width", width), ("precision", prec)):
        if v is not None and v > cap:
            raise TemplateLimitError(f"printf {what} {v} exceeds the limit of {cap}")
    return flag_chars, width, prec


def _sprintf(fmt: str, *args: Any, max_width: int | None = None) -> str:
    cap = limits().max_width if max_width is None else max_width
    out: list[str] = []
    i = 0
    ai = 0
    n = len(fmt)
    while i < n:
        c = fmt[i]
        if c != "%":
            j = fmt.find("%", i)
            j = n if j < 0 else j
            out.append(fmt[i:j])
            i = j
            continue
        j = i + 1
        while j < n and fmt[j] in "+-# 0123456789.":
            j += 1
        if j >= n:
            out.append("%!(NOVERB)")
            break
        flags, verb = fmt[i + 1:j], fmt[j]
        i = j + 1
        if verb == "%":
            out.append("%")
            continue
        flag_chars, width, prec = _spec(flags, cap)
        if ai >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        a = args[ai]
        ai += 1
        if verb in "vs":
            text = go_str(a) if a is not None else "<nil>"
            if verb == "s" and prec is not None:
                text = text[:prec]
        elif verb == "q":
            text = json.dumps(go_str(a), ensure_ascii=False)
        elif verb == "d" and isinstance(a, int) and not isinstance(a, bool):
            text = str(a)
        elif verb in "feg" and isinstance(a, int | float) and not isinstance(a, bool):
            text = (f"{float(a):.{6 if prec is None else prec}{verb}}" if verb != "g"
                    else format_float(float(a)))
        elif verb == "t" and isinstance(a, bool):
            text = go_str(a)
        elif verb == "x" and isinstance(a, int):
            text = format(a, "x")
        else:
            text = f"%!{verb}({type(a).__name__}={go_str(a)})"
        if width:
            text = text.ljust(width) if "-" in flag_chars else text.rjust(width)
        out.append(text)
    if ai < len(args):
        out.append("%!(EXTRA " + ", ".join(go_str(a) for a in args[ai:]) + ")")
    return "".join(out)


def _to_ts_type(v: Any) -> str:
    t = v if isinstance(v, str) else (v[0] if isinstance(v, list) and v else "any")
    return {"integer": "number", "array": "any[]", "object": "object"}.get(t, t)


FUNCS: dict[str, Callable[..., Any]] = {
    "len": _length,
    "index": _index,
    "slice": _slice,
    "print": _sprint,
    "printf": _sprintf,
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "json": lambda v: go_json(v),
    "currentDate": lambda: date.today().isoformat(),
    "yesterdayDate": lambda: (date.today() - timedelta(days=1)).isoformat(),
    "toTypeScriptType": _to_ts_type,
    "html": lambda *a: _sprint(*a).replace("&", "&amp;").replace("<", "&lt;")
    .replace(">", "&gt;").replace('"', "&#34;").replace("'", "&#39;"),
    "urlquery": lambda *a: __import__("urllib.parse").parse.quote_plus(_sprint(*a)),
}


class _Exec:
    def __init__(self, root: Any, lim: Limits) -> None:
        self.root = root
        self.out: list[str] = []
        self.scopes: list[dict[str, Any]] = [{"$": root}]
        self.steps_left = lim.max_steps
        self.output_left = lim.max_output
        self.lim = lim

    def emit(self, text: str) -> None:
        self.output_left -= len(text)
        if self.output_left < 0:
            raise TemplateLimitError(
                f"template output exceeds the limit of {self.lim.max_output} characters")
        self.out.append(text)

    def step(self, n: int = 1) -> None:
        self.steps_left -= n
        if self.steps_left < 0:
            raise TemplateLimitError(
                f"template execution exceeds the limit of {self.lim.max_steps} steps")
        if self.steps_left & 0xFF == 0:
            # a long render runs in a worker thread; hand the GIL over now and then so the
            # event loop is not starved (a CPU-bound thread otherwise holds it 5 ms per wait)
            time.sleep(0)

    def lookup(self, name: str) -> Any:
        for s in reversed(self.scopes):
            if name in s:
                return s[name]
        raise TemplateError(f"undefined variable: {name}")

    def setvar(self, name: str, value: Any) -> None:
        for s in reversed(self.scopes):
            if name in s:
                s[name] = value
                return
        raise TemplateError(f"undefined variable: {name}")

    def run(self, nodes: list[Any], dot: Any) -> None:
        for n in nodes:
            self.step()
            if isinstance(n, Text):
                self.emit(n.text)
            elif isinstance(n, Action):
                v = self.pipe(n.pipe, dot)
                if not n.pipe.decl:
                    self.emit(go_str(v))
            elif isinstance(n, Branch):
                self.branch(n, dot)
            elif isinstance(n, Loop):
                raise _Break() if n.kind == "break" else _Continue()

    def block(self, nodes: list[Any], dot: Any, vars_: dict[str, Any] | None = None) -> None:
        self.scopes.append(dict(vars_ or {}))
        try:
            self.run(nodes, dot)
        finally:
            self.scopes.pop()

    def branch(self, n: Branch, dot: Any) -> None:
        if n.kind == "range":
            self.range(n, dot)
            return
        self.scopes.append({})
        try:
            v = self.pipe(n.pipe, dot)
            if truth(v):
                self.block(n.body, v if n.kind == "with" else dot)
            elif n.else_body is not None:
                self.block(n.else_body, dot)
        finally:
            self.scopes.pop()

    def range(self, n: Branch, dot: Any) -> None:
        decl = n.pipe.decl
        inner = Pipe([], False, n.pipe.cmds)
        self.scopes.append({})
        try:
            v = self.pipe(inner, dot)
            items: Iterator[tuple[Any, Any]]
            if v is None:
                count = 0
                items = iter(())
            elif isinstance(v, dict):
                count = len(v)
                items = ((k, v[k]) for k in _sorted_keys(v))
            elif isinstance(v, list | tuple | str):
                count = len(v)
                items = enumerate(v)
            elif isinstance(v, int) and not isinstance(v, bool):
                count = max(v, 0)
                items = ((i, i) for i in range(count))
            else:
                raise TemplateError(f"range can't iterate over {go_str(v)}")
            if not count:
                if n.else_body is not None:
                    self.block(n.else_body, dot)
                return
            if count > self.steps_left:  # refuse up front rather than after the budget is gone
                raise TemplateLimitError(
                    f"template execution exceeds the limit of {self.lim.max_steps} steps")
            for k, elem in items:
                self.step()
                vars_: dict[str, Any] = {}
                if len(decl) == 1:
                    vars_[decl[0]] = elem
                elif len(decl) == 2:
                    vars_[decl[0]] = k
                    vars_[decl[1]] = elem
                try:
                    self.block(n.body, elem, vars_)
                except _Continue:
                    continue
                except _Break:
                    break
        finally:
            self.scopes.pop()

    def pipe(self, p: Pipe, dot: Any) -> Any:
        v: Any = _NOVAL
        for c in p.cmds:
            v = self.command(c, dot, v)
        for name in p.decl:
            if p.assign:
                self.setvar(name, v)
            else:
                self.scopes[-1][name] = v
        return v

    def command(self, c: Command, dot: Any, piped: Any) -> Any:
        first = c.args[0]
        if first.kind == "ident" and not first.chain:
            name = first.value
            if name in ("and", "or"):
                vals = [self.operand(a, dot) for a in c.args[1:]]
                if piped is not _NOVAL:
                    vals.append(piped)
                if not vals:
                    raise TemplateError(f"wrong number of args for {name}")
                for x in vals[:-1]:
                    if truth(x) == (name == "or"):
                        return x
                return vals[-1]
            args = [self.operand(a, dot) for a in c.args[1:]]
            if piped is not _NOVAL:
                args.append(piped)
            return self.call(name, args)
        if len(c.args) > 1 or piped is not _NOVAL:
            raise TemplateError(f"can't give argument to non-function {first.kind}")
        return self.operand(first, dot)

    def call(self, name: str, args: list[Any]) -> Any:
        if name == "not":
            if len(args) != 1:
                raise TemplateError("wrong number of args for not: want 1")
            return not truth(args[0])
        if name in ("eq", "ne"):
            if len(args) < 2 or (name == "ne" and len(args) != 2):
                raise TemplateError(f"wrong number of args for {name}")
            r = any(_basic_eq(args[0], b) for b in args[1:])
            return r if name == "eq" else not r
        if name in ("lt", "le", "gt", "ge"):
            if len(args) != 2:
                raise TemplateError(f"wrong number of args for {name}: want 2")
            c = _cmp(args[0], args[1])
            return {"lt": c < 0, "le": c <= 0, "gt": c > 0, "ge": c >= 0}[name]
        fn = FUNCS.get(name)
        if fn is None:
            raise TemplateError(f'function "{name}" not defined')
        try:
            if fn is _sprintf:
                return _sprintf(*args, max_width=self.lim.max_width)
            return fn(*args)
        except TemplateError:
            raise
        except (TypeError, ValueError) as e:
            raise TemplateError(f"error calling {name}: {e}") from None

    def operand(self, a: Operand, dot: Any) -> Any:
        if a.kind == "field":
            v = dot
        elif a.kind == "dot":
            v = dot
        elif a.kind == "var":
            v = self.lookup(a.value)
        elif a.kind == "literal":
            v = a.value
        elif a.kind == "pipe":
            v = self.pipe(a.value, dot)
        elif a.kind == "ident":
            v = self.call(a.value, [])
        else:  # pragma: no cover
            raise TemplateError(f"bad operand {a.kind}")
        for name in a.chain:
            v = field_of(v, name)
        return v


_NOVAL = object()


class Template:
    """A parsed Go template. `render(data)` executes it against a dict of root fields."""

    def __init__(self, source: str, lim: Limits | None = None) -> None:
        self.source = source
        self.limits = lim or limits()
        self.nodes = _Parser(source, self.limits).parse()
        names = {s.lower() for s in _idents(self.nodes)}
        if "messages" not in names and "response" not in names:
            self.nodes.append(Action(Pipe([], False, [Command([Operand("field",
                                                                       chain=["Response"])])])))
            names.add("response")
        self.vars = frozenset(names)

    def render(self, data: dict[str, Any], nodes: list[Any] | None = None) -> str:
        ex = _Exec(data, self.limits)
        try:
            ex.run(self.nodes if nodes is None else nodes, data)
        except (_Break, _Continue):
            raise TemplateError("break or continue outside range") from None
        except RecursionError:
            raise TemplateError("template nesting too deep") from None
        return "".join(ex.out)

    def until_response(self) -> list[Any]:
        """The tree with the first `.Response` action and everything after it removed (Ollama's
        legacy last-turn cut, so the model continues from there)."""
        state = {"cut": False}

        def walk(nodes: list[Any]) -> list[Any]:
            kept: list[Any] = []
            for n in nodes:
                if state["cut"]:
                    continue
                if isinstance(n, Action):
                    if any(a.kind == "field" and "Response" in a.chain
                           for c in n.pipe.cmds for a in c.args):
                        state["cut"] = True
                        continue
                    kept.append(n)
                elif isinstance(n, Branch):
                    body = walk(n.body)
                    else_body = walk(n.else_body) if n.else_body is not None else None
                    kept.append(Branch(n.kind, n.pipe, body, else_body))
                else:
                    kept.append(n)
            return kept

        return walk(self.nodes)


def parse(source: str, lim: Limits | None = None) -> Template:
    try:
        return Template(source, lim)
    except TemplateError:
        raise
    except (ValueError, IndexError) as e:
        raise TemplateError(str(e)) from None


def parse_or_reject(source: str) -> Template:
    """`parse` with the API's answer to a template that does not parse, for requests and for
    /api/create alike: 400 `template error: ...` (LimitExceeded for a bound: a 400 even where a
    request template's other errors are 500s)."""
    try:
        return parse(source)
    except TemplateLimitError as e:
        raise LimitExceeded(f"template error: {e}") from None
    except TemplateError as e:
        raise BadRequest(f"template error: {e}") from None
