"""OpenAI's chat completions: the request as ``GenerationParams``, the events as chunks, one answer.

``open_chat`` starts the generation (``gateway.generation``) and turns its events into
``ChatCompletionChunk``s; ``collect`` builds the non-streaming ``ChatCompletion`` from the very same
chunks, so both modes produce the same text by construction. The other OpenAI-style dialects map their
requests onto a ``ChatCompletionRequest`` and reuse ``to_params``: tools, forced calls, structured
outputs and sampling are decided here once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

import msgspec

from adapters.base import (
    Adapter,
    ChatMessage,
    Finished,
    FinishReason,
    GenerationParams,
    OutputFormat,
    ReasoningDelta,
    TextDelta,
    TokenLogprobs,
    ToolCall,
    ToolCallDelta,
    Usage,
)

from .. import __version__
from ..config import ModelSpec
from ..errors import UnsupportedParameterError
from ..generation import Generation, start_generation
from ..output_plan import plan_output
from ..sampling import sampling
from ..schemas import (
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
    CompletionUsage,
    Function,
    PromptTokensDetails,
)

SYSTEM_FINGERPRINT = f"fp_openarc_{__version__}"

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
    plan = plan_output(_with_effort_in_template(request), output_format)
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


THINKING_OFF = frozenset({"none", "minimal", "low"})
"""``reasoning_effort`` values that turn a model's thinking off: OpenAI's lowest efforts, where an
open model's only control is its template's switch."""


def _with_effort_in_template(request: ChatCompletionRequest) -> ChatCompletionRequest:
    """``reasoning_effort`` as chat template variables, unless the request sets them itself:
    ``reasoning_effort`` verbatim (gpt-oss's template reads it, as vLLM passes it), and
    ``enable_thinking`` false for the lowest efforts (Qwen3's and SmolLM3's switch). A template that reads
    neither ignores both."""
    effort = request.reasoning_effort
    if effort is None:
        return request
    kwargs = request.chat_template_kwargs or {}
    added: dict[str, object] = {"reasoning_effort": effort}
    if effort in THINKING_OFF:
        added["enable_thinking"] = False
    return msgspec.structs.replace(request, chat_template_kwargs={**added, **kwargs})


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


async def open_chat(
    adapter: Adapter, params: GenerationParams, include_usage: bool, timeout: float | None
) -> ChunkStream:
    """Start generating (a ``GatewayError`` if it cannot start) and return the chunks to come."""
    generation = await start_generation(adapter, params, timeout)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    chunks = chat_chunks(generation, completion_id, created, include_usage)
    return ChunkStream(chunks, completion_id, created, generation.model)


async def chat_chunks(
    generation: Generation, completion_id: str, created: int, include_usage: bool
) -> AsyncIterator[ChatCompletionChunk]:
    """The generation's events as OpenAI streams them: a role-only delta opening each choice, a chunk
    per event, and the usage last when asked for."""
    usage_field = None if include_usage else msgspec.UNSET

    def chunk(choices: list[ChunkChoice]) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=completion_id,
            created=created,
            model=generation.model,
            choices=choices,
            system_fingerprint=SYSTEM_FINGERPRINT,
            usage=usage_field,
        )

    for index in range(generation.n):
        yield chunk([ChunkChoice(index=index, delta=ChoiceDelta(role="assistant", content=""))])
    async with aclosing(generation.events) as events:
        async for event in events:
            if isinstance(event, Usage):
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
                yield chunk([ChunkChoice(index=event.index, delta=_delta(event))])


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
