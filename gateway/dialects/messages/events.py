"""A generation's events as Anthropic's stream events, and the message they build.

Anthropic's stream: ``message_start``, a ``ping``, then per content block ``content_block_start``, its
deltas (``text_delta``, ``input_json_delta``, ``thinking_delta``) and ``content_block_stop``; then
``message_delta`` with the stop reason and usage, and ``message_stop``. The prompt's token count is
known only when generation ends (the engine reports it with the usage), so ``message_start`` carries 0
input tokens and ``message_delta`` the real counts, which the ``anthropic`` SDK's stream helper takes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from adapters.base import Finished, ReasoningDelta, TextDelta, ToolCallDelta, Usage

from ...errors import GatewayError
from ...generation import Generation
from ...sse import TypedEvent
from .errors import anthropic_error
from .wire import ContentBlock, Message, StopReason, TextBlock, ThinkingBlock, ToolUseBlock
from .wire import Usage as MessageUsage

_STOP_REASONS: dict[str, StopReason] = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def new_message(model: str) -> Message:
    """An empty message for ``model``, with a fresh id and 0 tokens, for ``MessageEvents`` to fill."""
    return Message(
        id=f"msg_{uuid.uuid4().hex}",
        model=model,
        content=[],
        usage=MessageUsage(input_tokens=0, output_tokens=0),
    )


class MessageEvents:
    """Turns a generation's events into Anthropic's stream events, building ``message`` as it goes."""

    def __init__(self, message: Message, generation: Generation):
        self.message = message
        self._generation = generation
        self._open: ContentBlock | None = None
        self._parts: list[str] = []
        self._calls: dict[int, int] = {}  # the engine's call number -> content block index

    @staticmethod
    def error_event(error: GatewayError) -> TypedEvent:
        """What a failure after the first byte becomes: Anthropic's ``error`` event."""
        return "error", anthropic_error(error)

    async def events(self) -> AsyncIterator[TypedEvent]:
        """Anthropic's events, ``message_start`` to ``message_stop``; ``message`` is complete after them."""
        yield "message_start", {"type": "message_start", "message": self.message}
        yield "ping", {"type": "ping"}
        finished: Finished | None = None
        async with aclosing(self._generation.events) as events:
            async for event in events:
                if isinstance(event, Usage):
                    for close in self._close():
                        yield close
                    yield "message_delta", self._finish(event, finished)
                    yield "message_stop", {"type": "message_stop"}
                    return
                if isinstance(event, Finished):
                    finished = event
                elif isinstance(event, TextDelta | ReasoningDelta):
                    for piece in self._text(event):
                        yield piece
                elif isinstance(event, ToolCallDelta):
                    for piece in self._call(event):
                        yield piece

    def _start(self, block: ContentBlock) -> TypedEvent:
        self.message.content.append(block)
        self._open, self._parts = block, []
        start = (
            block
            if not isinstance(block, ToolUseBlock)
            else ToolUseBlock(id=block.id, name=block.name, input={})
        )
        return "content_block_start", {
            "type": "content_block_start",
            "index": self._index,
            "content_block": start,
        }

    @property
    def _index(self) -> int:
        return len(self.message.content) - 1

    def _delta(self, delta: dict[str, Any]) -> TypedEvent:
        return "content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta}

    def _text(self, event: TextDelta | ReasoningDelta) -> list[TypedEvent]:
        thinking = isinstance(event, ReasoningDelta)
        wanted = ThinkingBlock if thinking else TextBlock
        out = []
        if not isinstance(self._open, wanted):
            out += self._close()
            out.append(self._start(ThinkingBlock(thinking="") if thinking else TextBlock(text="")))
        if not event.text:
            return out
        self._parts.append(event.text)
        kind = "thinking_delta" if thinking else "text_delta"
        out.append(self._delta({"type": kind, "thinking" if thinking else "text": event.text}))
        return out

    def _call(self, event: ToolCallDelta) -> list[TypedEvent]:
        out = []
        if event.name is not None:
            out += self._close()
            out.append(
                self._start(ToolUseBlock(id=f"toolu_{uuid.uuid4().hex[:24]}", name=event.name, input={}))
            )
        if event.arguments:
            self._parts.append(event.arguments)
            out.append(self._delta({"type": "input_json_delta", "partial_json": event.arguments}))
        return out

    def _close(self) -> list[TypedEvent]:
        block, self._open = self._open, None
        if block is None:
            return []
        text = "".join(self._parts)
        if isinstance(block, TextBlock):
            block.text = text
        elif isinstance(block, ThinkingBlock):
            block.thinking = text
        else:
            try:
                block.input = json.loads(text) if text else {}
            except ValueError:  # cut off by max_tokens: Anthropic's input is always an object; the
                block.input = {}  # partial arguments went out as input_json_delta events
        return [("content_block_stop", {"type": "content_block_stop", "index": self._index})]

    def _finish(self, usage: Usage, finished: Finished | None) -> dict[str, Any]:
        message = self.message
        reason = finished.reason if finished else "stop"
        message.stop_reason = "stop_sequence" if finished and finished.stop else _STOP_REASONS[reason]
        message.stop_sequence = finished.stop if finished else None
        message.usage = MessageUsage(
            input_tokens=usage.prompt_tokens - (usage.cached_tokens or 0),
            output_tokens=usage.completion_tokens,
            cache_read_input_tokens=usage.cached_tokens or 0,
            cache_creation_input_tokens=0,
        )
        delta = {"stop_reason": message.stop_reason, "stop_sequence": message.stop_sequence}
        return {"type": "message_delta", "delta": delta, "usage": message.usage}
