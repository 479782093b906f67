"""The one generation path: request -> adapter events -> chunks -> SSE bytes, or collected into one answer.

``open_chunks`` starts generation and waits for the first event before anything is sent, so every
failure that can happen before generation (unknown model, context too long, queue full, bad template)
becomes a real HTTP status. ``collect`` builds the non-streaming ``ChatCompletion`` from the very same
chunks, so both modes produce the same text by construction.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TypeVar

import msgspec
from litestar import Request

from adapters.base import (
    Adapter,
    AdapterError,
    ChatMessage,
    Event,
    Finished,
    GenerationParams,
    TextDelta,
    ToolCall,
    Usage,
)

from . import __version__
from .errors import (
    ClientDisconnectedError,
    InvalidRequestError,
    OverloadedError,
    RequestTimeoutError,
    UnsupportedParameterError,
    from_adapter_error,
    to_gateway_error,
)
from .logs import PROMPTS_LOGGER
from .metrics import GenerationRecorder, recorder_for
from .schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageParam,
    ChatCompletionMessageToolCall,
    ChatCompletionRequest,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    CompletionUsage,
    PromptTokensDetails,
)

logger = logging.getLogger(__name__)
prompt_logger = logging.getLogger(PROMPTS_LOGGER)
"""Messages and generated text, at debug; silent unless ``log_prompts`` is set (see ``logs.py``)."""

SYSTEM_FINGERPRINT = f"fp_openarc_{__version__}"
_encoder = msgspec.json.Encoder()
_T = TypeVar("_T")

# Most chat templates predate OpenAI's "developer" role; it means what "system" means to them.
_TEMPLATE_ROLES = {"developer": "system"}


def to_params(request: ChatCompletionRequest) -> GenerationParams:
    """Map the wire request to backend-neutral generation parameters (the only place this happens)."""
    if request.logprobs or request.top_logprobs:
        raise UnsupportedParameterError("logprobs are not supported by this server", param="logprobs")
    stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
    return GenerationParams(
        messages=tuple(_to_chat_message(i, m) for i, m in enumerate(request.messages)),
        max_tokens=request.max_completion_tokens or request.max_tokens,
        n=request.n,
        temperature=1.0 if request.temperature is None else request.temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        top_k=request.top_k,
        min_p=request.min_p,
        seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        repetition_penalty=request.repetition_penalty,
        stop=stop,
        ignore_eos=request.ignore_eos,
        tools=tuple(msgspec.to_builtins(tool) for tool in request.tools or ()),
    )


def _to_chat_message(index: int, message: ChatCompletionMessageParam) -> ChatMessage:
    role = type(message).__struct_config__.tag
    content = message.content
    text = "\n".join(part.text for part in content) if isinstance(content, list) else (content or "")
    calls = getattr(message, "tool_calls", None) or ()
    return ChatMessage(
        role=_TEMPLATE_ROLES.get(role, role),
        content=text,
        tool_calls=tuple(_to_tool_call(index, j, call) for j, call in enumerate(calls)),
        tool_call_id=getattr(message, "tool_call_id", None),
    )


def _to_tool_call(message: int, index: int, call: ChatCompletionMessageToolCall) -> ToolCall:
    """A call from the history with its arguments decoded: chat templates render them as an object."""
    try:
        arguments = msgspec.json.decode(call.function.arguments)
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(
            f"The tool call's arguments are not valid JSON: {exc}",
            param=f"messages[{message}].tool_calls[{index}].function.arguments",
        ) from None
    return ToolCall(id=call.id, name=call.function.name, arguments=arguments)


@dataclass
class ChunkStream:
    """A started generation: the chunks of one completion, ready to be framed or collected."""

    chunks: AsyncIterator[ChatCompletionChunk]
    id: str
    created: int
    model: str


async def open_chunks(
    adapter: Adapter,
    request: ChatCompletionRequest,
    include_usage: bool,
    timeout: float | None,
    recorder: GenerationRecorder | None = None,
) -> ChunkStream:
    """Start generating and wait for the first event; raise a ``GatewayError`` if generation cannot start.

    ``timeout`` bounds the whole request, queueing included; past it, generation stops and the client
    gets ``RequestTimeoutError`` (as a status before the first byte, as an error event after it).
    ``recorder`` receives the generation's timings and token counts; by default, the metrics of the app
    serving the current request.
    """
    recorder = recorder or recorder_for(adapter.info.id)
    params = to_params(request)
    if prompt_logger.isEnabledFor(logging.DEBUG):
        prompt_logger.debug("messages: %s", msgspec.json.encode(request.messages).decode())
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
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    chunks = _chunks(
        first, events, deadline, completion_id, created, adapter.info.id, params.n, include_usage, recorder
    )
    return ChunkStream(chunks, completion_id, created, adapter.info.id)


async def _next_before(events: AsyncIterator[Event], deadline: float | None) -> Event | None:
    """The next event, ``None`` at the end; ``RequestTimeoutError`` once ``deadline`` (loop time) passes."""
    try:
        async with asyncio.timeout_at(deadline):
            return await anext(events, None)
    except TimeoutError:
        raise RequestTimeoutError("The request took longer than this model's request_timeout.") from None


async def _chunks(
    first: Event | None,
    events: AsyncIterator[Event],
    deadline: float | None,
    completion_id: str,
    created: int,
    model: str,
    n: int,
    include_usage: bool,
    recorder: GenerationRecorder,
) -> AsyncIterator[ChatCompletionChunk]:
    usage_field = None if include_usage else msgspec.UNSET
    answers: dict[int, list[str]] | None = {} if prompt_logger.isEnabledFor(logging.DEBUG) else None

    def chunk(choices: list[ChunkChoice]) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=completion_id,
            created=created,
            model=model,
            choices=choices,
            system_fingerprint=SYSTEM_FINGERPRINT,
            usage=usage_field,
        )

    # OpenAI opens every choice with a role-only delta.
    for index in range(n):
        yield chunk([ChunkChoice(index=index, delta=ChoiceDelta(role="assistant", content=""))])
    async with aclosing(events):
        event: Event | None = first
        while event is not None:
            if isinstance(event, TextDelta):
                if event.text:
                    recorder.text(event.index)
                if answers is not None:
                    answers.setdefault(event.index, []).append(event.text)
                yield chunk([ChunkChoice(index=event.index, delta=ChoiceDelta(content=event.text))])
            elif isinstance(event, Finished):
                yield chunk([ChunkChoice(index=event.index, delta=ChoiceDelta(), finish_reason=event.reason)])
            elif isinstance(event, Usage):
                recorder.finished(event)
                for index, parts in (answers or {}).items():
                    prompt_logger.debug("answer %d: %s", index, "".join(parts))
                if include_usage:
                    final = chunk([])
                    final.usage = _usage(event)
                    yield final
                return
            event = await _next_before(events, deadline)


def _usage(usage: Usage) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details=(
            msgspec.UNSET
            if usage.cached_tokens is None
            else PromptTokensDetails(cached_tokens=usage.cached_tokens)
        ),
    )


async def collect(stream: ChunkStream) -> ChatCompletion:
    """Assemble the non-streaming answer from the chunks (opened with ``include_usage=True``)."""
    texts: dict[int, list[str]] = {}
    reasons: dict[int, str] = {}
    usage: CompletionUsage | None = None
    async with aclosing(stream.chunks) as chunks:
        async for chunk in chunks:
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                if isinstance(choice.delta.content, str):
                    texts.setdefault(choice.index, []).append(choice.delta.content)
                if choice.finish_reason is not None:
                    reasons[choice.index] = choice.finish_reason
    if usage is None:  # the adapter broke its contract: Usage is always its last event
        raise RuntimeError("generation ended without usage")
    choices = [
        Choice(
            index=i,
            message=ChatCompletionMessage(content="".join(parts)),
            finish_reason=reasons.get(i, "stop"),
        )
        for i, parts in sorted(texts.items())
    ]
    return ChatCompletion(
        id=stream.id,
        created=stream.created,
        model=stream.model,
        choices=choices,
        usage=usage,
        system_fingerprint=SYSTEM_FINGERPRINT,
    )


async def sse(stream: ChunkStream) -> AsyncIterator[bytes]:
    """Frame chunks as OpenAI does: ``data: <json>\\n\\n`` lines, then ``data: [DONE]``.

    Errors after the first byte cannot change the status any more: they become one error event.
    """
    try:
        async with aclosing(stream.chunks) as chunks:
            async for chunk in chunks:
                yield b"data: " + _encoder.encode(chunk) + b"\n\n"
    except Exception as exc:  # noqa: BLE001 - every failure must reach the client as an error event
        yield b"data: " + _encoder.encode(to_gateway_error(exc).body()) + b"\n\n"
    yield b"data: [DONE]\n\n"


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
