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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from litestar import Request

from adapters.base import (
    Adapter,
    AdapterError,
    ChatMessage,
    Event,
    Finished,
    GenerationParams,
    OutputFormat,
    ReasoningDelta,
    TextDelta,
    TokenLogprobs,
    ToolCall,
    ToolCallDelta,
    Usage,
)

from . import __version__
from .config import ModelSpec, SpeculativeSettings
from .errors import (
    ClientDisconnectedError,
    OverloadedError,
    RequestTimeoutError,
    UnsupportedParameterError,
    from_adapter_error,
    to_gateway_error,
)
from .logs import PROMPTS_LOGGER
from .metrics import GenerationRecorder, recorder_for
from .output_plan import plan_output
from .schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageParam,
    ChatCompletionMessageToolCall,
    ChatCompletionRequest,
    ChatCompletionTokenLogprob,
    Choice,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChoiceLogprobs,
    ChunkChoice,
    CompletionRequest,
    CompletionUsage,
    FinishReason,
    Function,
    PromptTokensDetails,
)

if TYPE_CHECKING:
    from .completions import CompletionStream

logger = logging.getLogger(__name__)
prompt_logger = logging.getLogger(PROMPTS_LOGGER)
"""Messages and generated text, at debug; silent unless ``log_prompts`` is set (see ``logs.py``)."""

SYSTEM_FINGERPRINT = f"fp_openarc_{__version__}"
_encoder = msgspec.json.Encoder()
_T = TypeVar("_T")

# Most chat templates predate OpenAI's "developer" role; it means what "system" means to them.
_TEMPLATE_ROLES = {"developer": "system"}


def to_params(
    request: ChatCompletionRequest, output_format: OutputFormat, model: ModelSpec
) -> GenerationParams:
    """Map a chat request to backend-neutral generation parameters, with ``model``'s defaults."""
    _refuse_unsupported(request)
    if request.top_logprobs:
        raise UnsupportedParameterError(
            "top_logprobs is not supported: openvino-genai reports only the chosen token's log probability "
            "(logprobs: true with top_logprobs 0 or absent works)",
            param="top_logprobs",
        )
    plan = plan_output(request, output_format)
    return GenerationParams(
        messages=tuple(_to_chat_message(i, m) for i, m in enumerate(request.messages)),
        max_tokens=request.max_completion_tokens or request.max_tokens,
        logprobs=request.logprobs,
        tools=plan.tools,
        tool_format=plan.tool_format,
        constraint=plan.constraint,
        constraint_param=plan.constraint_param,
        template_kwargs=plan.template_kwargs or {},
        **sampling(request, model),
    )


_REFUSED = {
    "logit_bias": "logit_bias is not supported by openvino-genai's sampler",
    "functions": "functions (the legacy form of tools) is not supported: send tools",
    "function_call": "function_call (the legacy form of tool_choice) is not supported: send tool_choice",
    "audio": "audio output is not supported: OpenArc serves text models",
    "web_search_options": "web search is not supported",
}


def _refuse_unsupported(request: ChatCompletionRequest) -> None:
    """OpenAI fields whose effect OpenArc cannot give are a 400 naming them, never silently dropped."""
    for name, reason in _REFUSED.items():
        if getattr(request, name):
            raise UnsupportedParameterError(reason, param=name)
    if request.modalities and set(request.modalities) != {"text"}:
        raise UnsupportedParameterError("only the text modality is supported", param="modalities")


def sampling(request: ChatCompletionRequest | CompletionRequest, model: ModelSpec) -> dict[str, Any]:
    """The sampling settings chat and text completions share, as ``GenerationParams`` fields: what the
    request sets, else the model's ``sampling`` defaults, else OpenAI's; then speculative decoding's."""

    def setting(name: str, openai_default: float) -> Any:
        for value in (getattr(request, name), getattr(model.sampling, name)):
            if value is not None:
                return value
        return openai_default

    stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
    return {
        "n": request.n,
        "temperature": setting("temperature", 1.0),
        "top_p": setting("top_p", 1.0),
        "top_k": setting("top_k", 0),
        "min_p": setting("min_p", 0.0),
        "seed": request.seed,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "repetition_penalty": setting("repetition_penalty", 1.0),
        "stop": stop,
        "ignore_eos": request.ignore_eos,
        **_speculation(request, model.speculative),
    }


def _speculation(request: ChatCompletionRequest | CompletionRequest, model: SpeculativeSettings) -> dict:
    """Speculative decoding's settings for one request: its own, else the model's. Setting them for a
    model that does not decode speculatively is a 400, not silently nothing."""
    asked = {
        name: getattr(request, name)
        for name in ("num_assistant_tokens", "max_ngram_size")
        if getattr(request, name) is not None
    }
    if model.method == "none" and asked:
        name = next(iter(asked))
        raise UnsupportedParameterError(
            f"{name} needs a model served with speculative decoding (its speculative.method)", param=name
        )
    if model.method == "draft_model" and "max_ngram_size" in asked:
        raise UnsupportedParameterError(
            "max_ngram_size applies to prompt lookup; this model drafts with a draft model",
            param="max_ngram_size",
        )
    if model.method == "none":
        return {}
    return {
        "num_assistant_tokens": asked.get("num_assistant_tokens", model.num_assistant_tokens),
        "max_ngram_size": asked.get("max_ngram_size", model.max_ngram_size)
        if model.method == "prompt_lookup"
        else None,
    }


def _to_chat_message(index: int, message: ChatCompletionMessageParam) -> ChatMessage:
    role = type(message).__struct_config__.tag
    content = message.content
    text = "\n".join(part.text for part in content) if isinstance(content, list) else (content or "")
    calls = getattr(message, "tool_calls", None) or ()
    return ChatMessage(
        role=_TEMPLATE_ROLES.get(role, role),
        content=text,
        tool_calls=tuple(_to_tool_call(call) for call in calls),
        tool_call_id=getattr(message, "tool_call_id", None),
    )


def _to_tool_call(call: ChatCompletionMessageToolCall) -> ToolCall:
    """A call from the history, its arguments decoded: chat templates render them as an object.

    Arguments that are not JSON (a call cut off by ``max_tokens``, sent back as the model wrote it) go
    to the template as the string they are, as OpenAI accepts them: refusing would break the agent loop
    that merely echoes its history.
    """
    try:
        arguments = msgspec.json.decode(call.function.arguments)
    except msgspec.DecodeError:
        arguments = call.function.arguments
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
    params: GenerationParams,
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
            if isinstance(event, Usage):
                recorder.finished(event)
                for index, parts in (answers or {}).items():
                    prompt_logger.debug("answer %d: %s", index, "".join(parts))
                if include_usage:
                    final = chunk([])
                    final.usage = _usage(event)
                    yield final
                return
            if isinstance(event, Finished):
                yield chunk([ChunkChoice(index=event.index, delta=ChoiceDelta(), finish_reason=event.reason)])
            elif isinstance(event, TokenLogprobs):
                yield chunk([ChunkChoice(index=event.index, delta=ChoiceDelta(), logprobs=_logprobs(event))])
            else:
                recorder.text(event.index)
                if answers is not None:
                    answers.setdefault(event.index, []).append(_logged(event))
                yield chunk([ChunkChoice(index=event.index, delta=_delta(event))])
            event = await _next_before(events, deadline)


def _delta(event: TextDelta | ReasoningDelta | ToolCallDelta) -> ChoiceDelta:
    """An output event as OpenAI streams it. The first piece of a tool call carries its id, type and
    name; later pieces only more of its arguments."""
    if isinstance(event, TextDelta):
        return ChoiceDelta(content=event.text)
    if isinstance(event, ReasoningDelta):
        return ChoiceDelta(reasoning_content=event.text)
    if event.name is None:
        piece = ChoiceDeltaToolCall(
            index=event.call, function=ChoiceDeltaToolCallFunction(arguments=event.arguments)
        )
    else:
        piece = ChoiceDeltaToolCall(
            index=event.call,
            id=f"call_{uuid.uuid4().hex[:24]}",
            type="function",
            function=ChoiceDeltaToolCallFunction(name=event.name, arguments=event.arguments),
        )
    return ChoiceDelta(tool_calls=[piece])


def _logprobs(event: TokenLogprobs) -> ChoiceLogprobs:
    return ChoiceLogprobs(
        content=[
            ChatCompletionTokenLogprob(
                token=token, logprob=logprob, bytes=list(token.encode()), top_logprobs=[]
            )
            for token, logprob in zip(event.tokens, event.logprobs, strict=False)
        ]
    )


def _logged(event: TextDelta | ReasoningDelta | ToolCallDelta) -> str:
    if isinstance(event, ToolCallDelta):
        return event.arguments if event.name is None else f"<call {event.name}>{event.arguments}"
    return event.text


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
    answers: dict[int, _Answer] = {}
    usage: CompletionUsage | None = None
    async with aclosing(stream.chunks) as chunks:
        async for chunk in chunks:
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                answers.setdefault(choice.index, _Answer()).add(choice)
    if usage is None:  # the adapter broke its contract: Usage is always its last event
        raise RuntimeError("generation ended without usage")
    choices = [
        Choice(
            index=i,
            message=answer.message(),
            finish_reason=answer.finish_reason,
            logprobs=None if answer.logprobs is None else ChoiceLogprobs(content=answer.logprobs),
        )
        for i, answer in sorted(answers.items())
    ]
    return ChatCompletion(
        id=stream.id,
        created=stream.created,
        model=stream.model,
        choices=choices,
        usage=usage,
        system_fingerprint=SYSTEM_FINGERPRINT,
    )


@dataclass
class _Answer:
    """One choice of a non-streaming answer, assembled from its deltas."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] | None = None
    calls: dict[int, tuple[str, str, list[str]]] = field(default_factory=dict)
    finish_reason: FinishReason = "stop"
    logprobs: list[ChatCompletionTokenLogprob] | None = None

    def add(self, choice: ChunkChoice) -> None:
        delta = choice.delta
        if choice.logprobs is not None:
            self.logprobs = self.logprobs if self.logprobs is not None else []
            self.logprobs.extend(choice.logprobs.content or [])
        if isinstance(delta.content, str):
            self.content.append(delta.content)
        if isinstance(delta.reasoning_content, str):
            self.reasoning = self.reasoning if self.reasoning is not None else []
            self.reasoning.append(delta.reasoning_content)
        for piece in delta.tool_calls or ():
            if isinstance(piece.id, str):
                self.calls[piece.index] = (piece.id, str(piece.function.name), [])
            self.calls[piece.index][2].append(str(piece.function.arguments or ""))
        if choice.finish_reason is not None:
            self.finish_reason = choice.finish_reason

    def message(self) -> ChatCompletionMessage:
        content = "".join(self.content)
        message = ChatCompletionMessage(content=content if content or not self.calls else None)
        if self.calls:
            message.tool_calls = [
                ChatCompletionMessageToolCall(
                    id=call_id, function=Function(name=name, arguments="".join(args))
                )
                for call_id, name, args in (self.calls[i] for i in sorted(self.calls))
            ]
        if self.reasoning is not None:
            message.reasoning_content = "".join(self.reasoning)
        return message


async def sse(stream: ChunkStream | CompletionStream) -> AsyncIterator[bytes]:
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
