"""The one generation path every API dialect shares: start a generation, then its adapter events.

``start_generation`` hands the request to the adapter and waits for the first event before anything is
sent, so every failure that can happen before generation (context too long, queue full, bad template,
an engine that is down) becomes a real HTTP status in the dialect's own error shape. The ``Generation``
it returns yields the adapter's events (``TextDelta``, ``ReasoningDelta``, ``ToolCallDelta``,
``TokenLogprobs``, ``Finished``, then ``Usage`` last) under the request's deadline, recording metrics as
they pass. Each dialect (``gateway.dialects``) maps those events to its wire format; none of them
touches the engine, the deadline or the metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TypeVar

import msgspec
from litestar import Request

from adapters.base import (
    Adapter,
    AdapterError,
    Event,
    GenerationParams,
    PromptTokens,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)

from .errors import ClientDisconnectedError, OverloadedError, RequestTimeoutError, from_adapter_error
from .logs import PROMPTS_LOGGER
from .metrics import GenerationRecorder, recorder_for

logger = logging.getLogger(__name__)
prompt_logger = logging.getLogger(PROMPTS_LOGGER)
"""Messages and generated text, at debug; silent unless ``log_prompts`` is set (see ``logs.py``)."""

_T = TypeVar("_T")


@dataclass
class Generation:
    """A started generation: its events from the first on, ending with ``Usage``."""

    events: AsyncIterator[Event]
    model: str
    """The id of the model generating (what the response's ``model`` field says)."""
    n: int
    """Choices generated for the request."""


async def start_generation(
    adapter: Adapter,
    params: GenerationParams,
    timeout: float | None,
    recorder: GenerationRecorder | None = None,
) -> Generation:
    """Start generating and wait for the first event; raise a ``GatewayError`` if generation cannot start.

    ``timeout`` bounds the whole request, queueing included; past it, generation stops and the client
    gets ``RequestTimeoutError`` (as a status before the first byte, raised from the events after it).
    ``recorder`` receives the generation's timings and token counts; by default, the metrics of the app
    serving the current request.
    """
    recorder = recorder or recorder_for(adapter.info.id)
    if prompt_logger.isEnabledFor(logging.DEBUG):
        if params.prompt is not None:
            prompt_logger.debug("prompt: %s", params.prompt)
        else:
            prompt_logger.debug("messages: %s", msgspec.json.encode(params.messages).decode())
    deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
    events = adapter.stream(params)
    try:
        first = await _next_before(events, deadline)
    except AdapterError as exc:
        await events.aclose()
        error = from_adapter_error(exc)
        if isinstance(error, OverloadedError):
            recorder.rejected()
        raise error from exc
    except BaseException:
        await events.aclose()
        raise
    return Generation(_events(first, events, deadline, recorder), adapter.info.id, params.n)


async def _next_before(events: AsyncIterator[Event], deadline: float | None) -> Event | None:
    """The next event, ``None`` at the end; ``RequestTimeoutError`` once ``deadline`` (loop time) passes."""
    try:
        async with asyncio.timeout_at(deadline):
            return await anext(events, None)
    except TimeoutError:
        raise RequestTimeoutError("The request took longer than this model's request_timeout.") from None


async def _events(
    first: Event | None,
    events: AsyncIterator[Event],
    deadline: float | None,
    recorder: GenerationRecorder,
) -> AsyncIterator[Event]:
    answers: dict[int, list[str]] | None = {} if prompt_logger.isEnabledFor(logging.DEBUG) else None
    async with aclosing(events):
        event: Event | None = first
        while event is not None:
            if isinstance(event, Usage):
                recorder.finished(event)
                for index, parts in (answers or {}).items():
                    prompt_logger.debug("answer %d: %s", index, "".join(parts))
                yield event
                return
            if isinstance(event, TextDelta | ReasoningDelta | ToolCallDelta):
                recorder.text(event.index)
                if answers is not None:
                    answers.setdefault(event.index, []).append(_logged(event))
            yield event
            event = await _next_before(events, deadline)


def _logged(event: TextDelta | ReasoningDelta | ToolCallDelta) -> str:
    if isinstance(event, ToolCallDelta):
        return event.arguments if event.name is None else f"<call {event.name}>{event.arguments}"
    return event.text


async def count_prompt(adapter: Adapter, params: GenerationParams, timeout: float | None) -> PromptTokens:
    """The prompt ``params`` would give the model (templated and tokenized exactly as for generation),
    with nothing generated. Not counted in the generation metrics: nothing was generated."""
    events = adapter.stream(dataclasses.replace(params, prompt_only=True, n=1))
    try:
        async with aclosing(events), asyncio.timeout(timeout):
            async for event in events:
                if isinstance(event, PromptTokens):
                    return event
    except AdapterError as exc:
        raise from_adapter_error(exc) from exc
    except TimeoutError:
        raise RequestTimeoutError("The request took longer than this model's request_timeout.") from None
    raise RuntimeError("the adapter answered a prompt_only request without its tokens")


async def unless_disconnected(request: Request, work: Awaitable[_T]) -> _T:
    """Run ``work`` but cancel it as soon as the client disconnects.

    Litestar does not watch non-streaming handlers for disconnects, so a client that gives up would
    otherwise keep its generation (and KV cache) running to the end.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        logger.info("client disconnected; generation cancelled")
        raise ClientDisconnectedError
    return task.result()


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
