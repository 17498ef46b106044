"""OpenAI Responses <-> the engine: request translation, the streaming event sequence (every
event numbered by `sequence_number` from 0) and the `response` object. ollamapy keeps no
server-side state: `previous_response_id` and `conversation` are refused with a clear 400 (send
the whole conversation in `input`), `store` is accepted and answered as `false`."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from typing import Any, cast

from ollamapy import jsoncodec
from ollamapy.api.inference import Message, Think, Tool, ToolCall, ToolCallFunction, ToolFunction
from ollamapy.api.openai import EFFORT
from ollamapy.api.responses import FunctionTool, InputContent, InputItem, ResponsesRequest
from ollamapy.errors import BadRequest, OllamaError, PromptTooLong
from ollamapy.inference.events import Done, Event, TextDelta, ThinkingDelta, ToolCallEvent
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.inference.request import InferenceRequest
from ollamapy.translate.forced import call_schema
from ollamapy.translate.turn import Turn

NO_STATE = ("previous_response_id is not supported: ollamapy keeps no server-side response "
            "state; send the whole conversation in `input`")


def response_id() -> str:
    return "resp_" + secrets.token_hex(12)


def _item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


# ------------------------------------------------------------------ request


def _image(url: str | None) -> str:
    if not url:
        raise BadRequest("input_image needs an image_url")
    if url.startswith(("http://", "https://")):
        raise BadRequest("image URLs are not currently supported, please use base64 encoded "
                         "data instead")
    head, sep, data = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise BadRequest("invalid image input")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("invalid image input") from None
    return data


def _parts(content: str | list[InputContent] | None) -> tuple[str, list[str]]:
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    text: list[str] = []
    images: list[str] = []
    for p in content:
        if p.type in ("input_text", "output_text", "text"):
            text.append(p.text or "")
        elif p.type == "refusal":
            text.append(p.refusal or "")
        elif p.type == "input_image":
            images.append(_image(p.image_url))
        else:
            raise BadRequest(f"content part type {p.type!r} is not supported")
    return "".join(text), images


def _reasoning_text(item: InputItem) -> str:
    texts = [s.get("text") for s in item.summary or [] if isinstance(s.get("text"), str)]
    return "".join(t for t in texts if t) or item.encrypted_content or ""


def messages(req: ResponsesRequest) -> list[Message]:
    out: list[Message] = []
    if req.instructions:
        out.append(Message(role="system", content=req.instructions))
    if isinstance(req.input, str):
        if req.input:
            out.append(Message(role="user", content=req.input))
        return out
    names: dict[str, str] = {}
    thinking = ""
    for i, item in enumerate(req.input):
        kind = item.type or ("message" if item.role else None)
        if kind == "message":
            role = {"developer": "system"}.get(item.role or "", item.role or "")
            if role not in ("user", "assistant", "system"):
                raise BadRequest(f"input[{i}]: invalid message role {item.role!r}")
            text, images = _parts(item.content)
            msg = Message(role=role, content=text, images=images or None)
            if role == "assistant" and thinking:
                msg.thinking, thinking = thinking, ""
            out.append(msg)
        elif kind == "function_call":
            if not item.name or not item.call_id:
                raise BadRequest(f"input[{i}]: function_call needs name and call_id")
            try:
                args = json.loads(item.arguments) if item.arguments else {}
            except ValueError:
                raise BadRequest(f"input[{i}]: function_call arguments are not valid JSON"
                                 ) from None
            if not isinstance(args, dict):
                raise BadRequest(f"input[{i}]: function_call arguments must be a JSON object")
            names[item.call_id] = item.name
            last = out[-1] if out else None
            if last is None or last.role != "assistant":
                last = Message(role="assistant", content="")
                out.append(last)
            calls = last.tool_calls or []
            calls.append(ToolCall(id=item.call_id, function=ToolCallFunction(
                index=len(calls), name=item.name, arguments=args)))
            last.tool_calls = calls
            if thinking:
                last.thinking, thinking = thinking, ""
        elif kind == "function_call_output":
            if not item.call_id:
                raise BadRequest(f"input[{i}]: function_call_output needs call_id")
            text, images = _parts(item.output)
            out.append(Message(role="tool", content=text, images=images or None,
                               tool_call_id=item.call_id, tool_name=names.get(item.call_id)))
        elif kind == "reasoning":
            thinking += _reasoning_text(item)
        elif kind is None:
            raise BadRequest(f"input[{i}]: input item missing required 'type' field")
        else:
            raise BadRequest(f"input[{i}]: input item type {kind!r} is not supported")
    if thinking:
        out.append(Message(role="assistant", content="", thinking=thinking))
    return out


def _function_tools(t: FunctionTool, prefix: str = "") -> list[Tool]:
    """One declaration -> function tools. A `namespace` (Codex groups e.g. its sub-agent tools
    under one) expands to its members named `<namespace>.<member>`, as Ollama does: the model
    sees every real schema and calls them by the qualified name."""
    if t.type == "namespace":
        if not t.name:
            raise BadRequest("namespace tool needs a name")
        return [f for m in t.tools or [] for f in _function_tools(m, f"{prefix}{t.name}.")]
    if t.type != "function":
        raise BadRequest(f"tool type {t.type!r} is not supported: ollamapy runs only "
                         "function tools")
    if not t.name:
        raise BadRequest("function tool needs a name")
    name = t.name if t.name.startswith(prefix) else prefix + t.name
    return [Tool(type="function", function=ToolFunction(
        name=name, description=t.description, parameters=t.parameters or {}))]


def _tools(req: ResponsesRequest) -> list[Tool] | None:
    tools = [f for t in req.tools or [] for f in _function_tools(t)]
    choice = req.tool_choice
    if choice == "none":
        return None
    if isinstance(choice, dict):
        name = choice.get("name")
        if choice.get("type") != "function" or not isinstance(name, str):
            raise BadRequest("tool_choice must be \"none\", \"auto\", \"required\" or "
                             "{\"type\": \"function\", \"name\": ...}")
        tools = [t for t in tools if t.function.name == name]
        if not tools:
            raise BadRequest(f"tool_choice names function {name!r}, which is not in tools")
    elif choice not in (None, "auto", "required"):
        raise BadRequest(f"invalid tool_choice: {choice!r}")
    return tools or None


def _think(req: ResponsesRequest) -> Think:
    effort = req.reasoning.effort if req.reasoning else None
    if effort is None:
        return None
    if effort not in EFFORT:
        raise BadRequest(f"invalid reasoning value: '{effort}' (must be \"high\", \"medium\", "
                         "\"low\", \"max\", or \"none\")")
    return cast(Think, EFFORT[effort])


def _format(req: ResponsesRequest) -> Any:
    fmt = req.text.format if req.text else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return "json"
    if fmt.type == "json_schema":
        if not isinstance(fmt.json_schema, dict):
            raise BadRequest("text.format json_schema needs a `schema` object")
        return fmt.json_schema
    raise BadRequest(f"invalid text.format type: {fmt.type!r}")


def to_inference(req: ResponsesRequest) -> InferenceRequest:
    if req.previous_response_id:
        raise BadRequest(NO_STATE)
    if req.conversation:
        raise BadRequest("conversation is not supported: ollamapy keeps no server-side "
                         "state; send the whole conversation in `input`")
    if req.background:
        raise BadRequest("background responses are not supported")
    if not req.model:
        raise BadRequest("model is required")
    msgs = messages(req)
    if not msgs:
        raise BadRequest("input is required")
    opts: JsonObject = {"temperature": 1.0 if req.temperature is None else req.temperature}
    if req.top_p is not None:
        opts["top_p"] = req.top_p
    if req.max_output_tokens is not None:
        if req.max_output_tokens <= 0:
            raise BadRequest("max_output_tokens must be positive")
        opts["num_predict"] = req.max_output_tokens
    tools = _tools(req)
    fmt = _format(req)
    if tools and forced(req):
        if fmt is not None:
            raise BadRequest("tool_choice that forces a function call cannot be combined with "
                             "text.format")
        fmt = call_schema(tools)
    # truncate/shift off: an agent's conversation is never cut silently; too long -> 400
    return InferenceRequest(model=req.model, messages=msgs, tools=tools, think=_think(req),
                            format=fmt, options=opts, truncate=False, shift=False)


def forced(req: ResponsesRequest) -> bool:
    """`tool_choice` `required` or a named function: the answer must be a call."""
    return req.tool_choice == "required" or isinstance(req.tool_choice, dict)


def too_long(e: PromptTooLong) -> BadRequest:
    """OpenAI's wording for a prompt over the context window."""
    return BadRequest(f"Your input exceeds the context window of this model: {e.tokens} tokens "
                      f"> {e.limit} maximum. Raise the context (OLLAMA_CONTEXT_LENGTH, or "
                      "num_ctx in a Modelfile) or shorten the input.")


# ------------------------------------------------------------------ answer


def _usage(done: Done | None) -> JsonObject | None:
    if done is None:
        return None
    return {"input_tokens": done.prompt_eval_count, "output_tokens": done.eval_count,
            "total_tokens": done.prompt_eval_count + done.eval_count,
            "input_tokens_details": {"cached_tokens": done.cached_prompt_tokens},
            "output_tokens_details": {"reasoning_tokens": 0}}


def _text_part(text: str) -> JsonObject:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(iid: str, text: str, status: str) -> JsonObject:
    return {"id": iid, "type": "message", "status": status, "role": "assistant",
            "content": [_text_part(text)] if status == "completed" else []}


def _reasoning_item(iid: str, text: str | None) -> JsonObject:
    summary = [] if text is None else [{"type": "summary_text", "text": text}]
    return {"id": iid, "type": "reasoning", "summary": summary}


def _call_item(iid: str, call: ToolCallEvent, status: str) -> JsonObject:
    return {"id": iid, "type": "function_call", "status": status, "call_id": call.id,
            "name": call.name,
            "arguments": json.dumps(call.arguments) if status == "completed" else ""}


def response_object(rid: str, req: ResponsesRequest, created_at: int, status: str,
                    output: list[JsonObject], done: Done | None,
                    error: JsonObject | None = None) -> JsonObject:
    """The `response` object (also the payload of created/in_progress/completed events)."""
    incomplete = None
    if status == "incomplete":
        incomplete = {"reason": "max_output_tokens"}
    fmt: JsonObject = {"type": "text"}
    if req.text and req.text.format:
        fmt = req.text.format.model_dump(by_alias=True, exclude_none=True)
    reasoning = None
    if req.reasoning:
        reasoning = {"effort": req.reasoning.effort, "summary": req.reasoning.summary}
    return {
        "id": rid, "object": "response", "created_at": created_at, "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": error, "incomplete_details": incomplete,
        "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
        "model": req.model, "output": output,
        "parallel_tool_calls": True if req.parallel_tool_calls is None else req.parallel_tool_calls,
        "previous_response_id": None, "reasoning": reasoning, "store": False,
        "temperature": 1.0 if req.temperature is None else req.temperature,
        "text": {"format": fmt},
        "tool_choice": req.tool_choice if req.tool_choice is not None else "auto",
        "tools": [t.model_dump(exclude_none=True) for t in req.tools or []],
        "top_p": 1.0 if req.top_p is None else req.top_p,
        "truncation": req.truncation or "disabled",
        "usage": _usage(done), "user": req.user, "metadata": req.metadata or {},
    }


def final_status(done: Done) -> str:
    return "incomplete" if done.done_reason == "length" else "completed"


def output_items(turn: Turn) -> list[JsonObject]:
    out = []
    for b in turn.blocks:
        if b.kind == "text":
            out.append(_message_item(_item_id("msg"), b.text, "completed"))
        elif b.kind == "thinking":
            out.append(_reasoning_item(_item_id("rs"), b.text))
        elif b.call is not None:
            out.append(_call_item(_item_id("fc"), b.call, "completed"))
    return out


def response_from_turn(rid: str, req: ResponsesRequest, created_at: int,
                       turn: Turn) -> JsonObject:
    """The non-streaming answer."""
    done = turn.done or Done()
    return response_object(rid, req, created_at, final_status(done), output_items(turn), done)


class ResponseStream:
    """Engine events -> Responses streaming events. Items open and close as the kind of output
    changes (reasoning, message text, one item per function call)."""

    def __init__(self, rid: str, req: ResponsesRequest, created_at: int) -> None:
        self.rid, self.req, self.created_at = rid, req, created_at
        self.seq = 0
        self.started = False
        self.finished = False
        self.output: list[JsonObject] = []  # completed items
        self.open: str | None = None  # "text" | "thinking"
        self.open_id = ""
        self.open_text = ""

    def _ev(self, kind: str, **data: Any) -> JsonObject:
        ev = {"type": kind, "sequence_number": self.seq, **data}
        self.seq += 1
        return ev

    def _response(self, status: str, done: Done | None = None,
                  error: JsonObject | None = None) -> JsonObject:
        return response_object(self.rid, self.req, self.created_at, status, list(self.output),
                               done, error)

    def _start(self) -> list[JsonObject]:
        if self.started:
            return []
        self.started = True
        return [self._ev("response.created", response=self._response("in_progress")),
                self._ev("response.in_progress", response=self._response("in_progress"))]

    def _close(self) -> list[JsonObject]:
        if self.open is None:
            return []
        idx, iid, text = len(self.output), self.open_id, self.open_text
        kind, self.open = self.open, None
        if kind == "text":
            item = _message_item(iid, text, "completed")
            evs = [self._ev("response.output_text.done", item_id=iid, output_index=idx,
                            content_index=0, text=text, logprobs=[]),
                   self._ev("response.content_part.done", item_id=iid, output_index=idx,
                            content_index=0, part=_text_part(text))]
        else:
            item = _reasoning_item(iid, text)
            part = {"type": "summary_text", "text": text}
            evs = [self._ev("response.reasoning_summary_text.done", item_id=iid,
                            output_index=idx, summary_index=0, text=text),
                   self._ev("response.reasoning_summary_part.done", item_id=iid,
                            output_index=idx, summary_index=0, part=part)]
        self.output.append(item)
        evs.append(self._ev("response.output_item.done", output_index=idx, item=item))
        return evs

    def _open(self, kind: str) -> list[JsonObject]:
        idx = len(self.output)
        self.open, self.open_text = kind, ""
        if kind == "text":
            self.open_id = _item_id("msg")
            return [self._ev("response.output_item.added", output_index=idx,
                             item=_message_item(self.open_id, "", "in_progress")),
                    self._ev("response.content_part.added", item_id=self.open_id,
                             output_index=idx, content_index=0, part=_text_part(""))]
        self.open_id = _item_id("rs")
        return [self._ev("response.output_item.added", output_index=idx,
                         item=_reasoning_item(self.open_id, None)),
                self._ev("response.reasoning_summary_part.added", item_id=self.open_id,
                         output_index=idx, summary_index=0,
                         part={"type": "summary_text", "text": ""})]

    def feed(self, ev: Event) -> list[JsonObject]:
        if self.finished:
            return []
        out = self._start()
        idx = len(self.output)
        if isinstance(ev, TextDelta | ThinkingDelta):
            if not ev.text:
                return out
            kind = "text" if isinstance(ev, TextDelta) else "thinking"
            if self.open != kind:
                out += self._close()
                out += self._open(kind)
                idx = len(self.output)
            self.open_text += ev.text
            if kind == "text":
                out.append(self._ev("response.output_text.delta", item_id=self.open_id,
                                    output_index=idx, content_index=0, delta=ev.text,
                                    logprobs=[]))
            else:
                out.append(self._ev("response.reasoning_summary_text.delta",
                                    item_id=self.open_id, output_index=idx, summary_index=0,
                                    delta=ev.text))
        elif isinstance(ev, ToolCallEvent):
            out += self._close()
            idx = len(self.output)
            iid = _item_id("fc")
            args = json.dumps(ev.arguments)
            item = _call_item(iid, ev, "completed")
            out += [self._ev("response.output_item.added", output_index=idx,
                             item=_call_item(iid, ev, "in_progress")),
                    self._ev("response.function_call_arguments.delta", item_id=iid,
                             output_index=idx, delta=args),
                    self._ev("response.function_call_arguments.done", item_id=iid,
                             output_index=idx, name=ev.name, arguments=args),
                    self._ev("response.output_item.done", output_index=idx, item=item)]
            self.output.append(item)
        elif isinstance(ev, Done):
            out += self._close()
            status = final_status(ev)
            kind = "response.completed" if status == "completed" else "response.incomplete"
            out.append(self._ev(kind, response=self._response(status, ev)))
            self.finished = True
        return out

    def error(self, e: OllamaError) -> list[JsonObject]:
        """A failure after the stream started: `response.failed` with the error inside."""
        self.finished = True
        code = "server_error" if e.status >= 500 else "invalid_request_error"
        return [self._ev("response.failed", response=self._response(
            "failed", error={"code": code, "message": e.message}))]


def sse_bytes(events: list[JsonObject]) -> bytes:
    return b"".join(b"event: " + str(e["type"]).encode() + b"\ndata: " + jsoncodec.dumps(e)
                    + b"\n\n" for e in events)
