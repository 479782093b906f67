"""A generation's events as the Responses API's typed events, and the response they build."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from adapters.base import Finished, ReasoningDelta, TextDelta, ToolCallDelta, Usage

from ...errors import GatewayError
from ...generation import Generation
from ...schemas import AssistantMessage, ChatCompletionMessageToolCall, ChatCompletionRequest, Function
from ...sse import TypedEvent
from .request import Conversation
from .wire import (
    IncompleteDetails,
    InputTokensDetails,
    OutputItem,
    OutputTokensDetails,
    Response,
    ResponseCreateRequest,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
    ResponseReasoningText,
    ResponseUsage,
    TextConfig,
    TextFormat,
)


def new_response_id() -> str:
    """A fresh response id: ``resp_`` and 32 hex digits."""
    return f"resp_{uuid.uuid4().hex}"


def blank_response(response_id: str, request: ResponseCreateRequest, model: str, store: bool) -> Response:
    """The response as ``response.created`` shows it: in progress, nothing output yet."""
    return Response(
        id=response_id,
        created_at=int(time.time()),
        status="in_progress",
        instructions=request.instructions,
        max_output_tokens=request.max_output_tokens,
        model=model,
        output=[],
        parallel_tool_calls=True if request.parallel_tool_calls is None else request.parallel_tool_calls,
        previous_response_id=request.previous_response_id,
        reasoning=request.reasoning,
        store=store,
        temperature=request.temperature,
        text=request.text or TextConfig(format=TextFormat(type="text")),
        tool_choice=request.tool_choice or ("auto" if request.tools else "none"),
        tools=request.tools or [],
        top_p=request.top_p,
        truncation=request.truncation or "disabled",
        user=request.user,
        metadata=request.metadata or {},
    )


@dataclass
class _Open:
    """The output item being written, and the text it has so far."""

    item: OutputItem
    index: int
    parts: list[str] = field(default_factory=list)


class ResponseEvents:
    """Turns a generation's events into the Responses API's typed events, building the response as it
    goes; ``response`` is complete once the events are."""

    def __init__(self, response: Response, generation: Generation, namespaces: dict[str, str] | None = None):
        self.response = response
        self._generation = generation
        self._namespaces = namespaces or {}
        self._sequence = 0
        self._open: _Open | None = None
        self._calls: dict[int, _Open] = {}

    def error_event(self, error: GatewayError) -> TypedEvent:
        """What a failure after the first byte becomes (the SDK's ``ResponseErrorEvent``)."""
        return self._event("error", code=error.code or error.type, message=error.message, param=error.param)

    async def events(self) -> AsyncIterator[TypedEvent]:
        """The typed events, ``response.created`` to ``response.completed`` (or ``response.incomplete``)."""
        yield self._event("response.created", response=self.response)
        yield self._event("response.in_progress", response=self.response)
        reason = "stop"
        async with aclosing(self._generation.events) as events:
            async for event in events:
                if isinstance(event, Usage):
                    for close in self._close():
                        yield close
                    self._finish(event, reason)
                    kind = (
                        "response.completed" if self.response.status == "completed" else "response.incomplete"
                    )
                    yield self._event(kind, response=self.response)
                    return
                if isinstance(event, Finished):
                    reason = event.reason
                elif isinstance(event, TextDelta | ReasoningDelta):
                    for piece in self._text(event):
                        yield piece
                elif isinstance(event, ToolCallDelta):
                    for piece in self._call(event):
                        yield piece

    def _next(self) -> int:
        self._sequence += 1
        return self._sequence - 1

    def _event(self, kind: str, **body: Any) -> TypedEvent:
        return kind, {"type": kind, "sequence_number": self._next(), **body}

    def _text(self, event: TextDelta | ReasoningDelta) -> list[TypedEvent]:
        reasoning = isinstance(event, ReasoningDelta)
        wanted = ResponseReasoningItem if reasoning else ResponseOutputMessage
        out = []
        if self._open is None or not isinstance(self._open.item, wanted):
            out += self._close()
            out += self._start_text(reasoning)
        assert self._open is not None
        self._open.parts.append(event.text)
        kind = "response.reasoning_text.delta" if reasoning else "response.output_text.delta"
        extra = {} if reasoning else {"logprobs": []}
        out.append(
            self._event(
                kind,
                item_id=self._open.item.id,
                output_index=self._open.index,
                content_index=0,
                delta=event.text,
                **extra,
            )
        )
        return out

    def _start_text(self, reasoning: bool) -> list[TypedEvent]:
        index = len(self.response.output)
        if reasoning:
            item: OutputItem = ResponseReasoningItem(
                id=f"rs_{uuid.uuid4().hex}", content=[], status="in_progress"
            )
            part: Any = ResponseReasoningText(text="")
        else:
            item = ResponseOutputMessage(id=f"msg_{uuid.uuid4().hex}", status="in_progress", content=[])
            part = ResponseOutputText(text="")
        self.response.output.append(item)
        self._open = _Open(item, index)
        return [
            self._event("response.output_item.added", output_index=index, item=item),
            self._event(
                "response.content_part.added", item_id=item.id, output_index=index, content_index=0, part=part
            ),
        ]

    def _call(self, event: ToolCallDelta) -> list[TypedEvent]:
        out = []
        if event.name is not None:  # a new call
            if self._open is not None:
                out += self._close()
            index = len(self.response.output)
            item = ResponseFunctionToolCall(
                id=f"fc_{uuid.uuid4().hex}",
                call_id=f"call_{uuid.uuid4().hex[:24]}",
                name=event.name,
                arguments="",
                status="in_progress",
            )
            if event.name in self._namespaces:
                item.namespace = self._namespaces[event.name]
            self.response.output.append(item)
            self._calls[event.call] = _Open(item, index)
            out.append(self._event("response.output_item.added", output_index=index, item=item))
        current = self._calls[event.call]
        current.parts.append(event.arguments)
        if event.arguments:
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=current.item.id,
                    output_index=current.index,
                    delta=event.arguments,
                )
            )
        return out

    def _close(self) -> list[TypedEvent]:
        """Finish the text item being written and every call: their ``done`` events."""
        out = []
        if self._open is not None:
            opened, self._open = self._open, None
            text = "".join(opened.parts)
            item = opened.item
            common = {"item_id": item.id, "output_index": opened.index, "content_index": 0}
            if isinstance(item, ResponseReasoningItem):
                part: Any = ResponseReasoningText(text=text)
                item.content = [part]
                out.append(self._event("response.reasoning_text.done", **common, text=text))
            else:
                assert isinstance(item, ResponseOutputMessage)
                part = ResponseOutputText(text=text)
                item.content = [part]
                out.append(self._event("response.output_text.done", **common, text=text, logprobs=[]))
            item.status = "completed"
            out.append(self._event("response.content_part.done", **common, part=part))
            out.append(self._event("response.output_item.done", output_index=opened.index, item=item))
        for call in self._calls.values():
            item = call.item
            assert isinstance(item, ResponseFunctionToolCall)
            item.arguments, item.status = "".join(call.parts), "completed"
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item.id,
                    output_index=call.index,
                    name=item.name,
                    arguments=item.arguments,
                )
            )
            out.append(self._event("response.output_item.done", output_index=call.index, item=item))
        self._calls = {}
        return out

    def _finish(self, usage: Usage, reason: str) -> None:
        response = self.response
        response.usage = ResponseUsage(
            input_tokens=usage.prompt_tokens,
            input_tokens_details=InputTokensDetails(cached_tokens=usage.cached_tokens or 0),
            output_tokens=usage.completion_tokens,
            output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
            total_tokens=usage.total_tokens,
        )
        if reason == "length":
            response.status = "incomplete"
            response.incomplete_details = IncompleteDetails(reason="max_output_tokens")
            for item in response.output:
                item.status = "incomplete"
        else:
            response.status = "completed"


def conversation_after(chat: ChatCompletionRequest, response: Response) -> Conversation:
    """The conversation a continuation starts from: the chat it was, plus what this response said."""
    text = "".join(
        part.text
        for item in response.output
        if isinstance(item, ResponseOutputMessage)
        for part in item.content
    )
    calls = [
        ChatCompletionMessageToolCall(
            id=item.call_id, function=Function(name=item.name, arguments=item.arguments)
        )
        for item in response.output
        if isinstance(item, ResponseFunctionToolCall)
    ]
    return [*chat.messages, AssistantMessage(content=text or None, tool_calls=calls or None)]
