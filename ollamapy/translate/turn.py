"""One answer folded from the engine's events, in the order the model produced it: what the
non-streaming answers of every agent API are built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ollamapy.inference.events import Done, Event, TextDelta, ThinkingDelta, ToolCallEvent

BlockKind = Literal["thinking", "text", "tool"]


@dataclass(slots=True)
class Block:
    kind: BlockKind
    text: str = ""
    call: ToolCallEvent | None = None


@dataclass(slots=True)
class Turn:
    blocks: list[Block] = field(default_factory=list)
    done: Done | None = None

    def add(self, ev: Event) -> None:
        if isinstance(ev, TextDelta | ThinkingDelta):
            if not ev.text:
                return
            kind: BlockKind = "text" if isinstance(ev, TextDelta) else "thinking"
            if self.blocks and self.blocks[-1].kind == kind:
                self.blocks[-1].text += ev.text
            else:
                self.blocks.append(Block(kind, ev.text))
        elif isinstance(ev, ToolCallEvent):
            self.blocks.append(Block("tool", call=ev))
        elif isinstance(ev, Done):
            self.done = ev

    @property
    def tool_calls(self) -> list[ToolCallEvent]:
        return [b.call for b in self.blocks if b.call is not None]


def fold(events: list[Event]) -> Turn:
    turn = Turn()
    for ev in events:
        turn.add(ev)
    return turn
