"""OpenAI's legacy text completions (``/v1/completions``) on the one generation path.

Each prompt of a request is one generation of its raw text (no chat template), started through
``gateway.generation`` like a chat; its events become ``text_completion`` chunks here, so stop strings,
timeouts, disconnects, metrics and errors behave exactly as in chat. The prompts are
started together, so they batch in the engine, and their chunks are sent prompt after prompt (those of
later prompts wait, already generated, in their queues): choice ``i`` of prompt ``p`` is choice
``p * n + i``, as OpenAI numbers them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field

import msgspec

from adapters.base import Adapter, Finished, FinishReason, GenerationParams, TextDelta, TokenLogprobs, Usage

from ..config import ModelSpec
from ..errors import UnsupportedParameterError
from ..generation import Generation, start_generation
from ..sampling import sampling
from ..schemas import (
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionUsage,
    PromptTokensDetails,
)
from .chat import SYSTEM_FINGERPRINT


def completion_params(request: CompletionRequest, model: ModelSpec) -> list[GenerationParams]:
    """One ``GenerationParams`` per prompt; what cannot be served is refused by name."""
    if request.suffix:
        raise UnsupportedParameterError("suffix (fill-in-the-middle) is not supported", param="suffix")
    if request.best_of is not None and request.best_of != request.n:
        raise UnsupportedParameterError(
            "best_of different from n is not supported (every generated choice is returned)", param="best_of"
        )
    if request.logprobs:
        raise UnsupportedParameterError(
            "logprobs above 0 is not supported: openvino-genai reports only the chosen token's log "
            "probability (logprobs: 0 returns it for every token)",
            param="logprobs",
        )
    prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
    settings = sampling(request, model)
    return [
        GenerationParams(
            messages=(),
            prompt=prompt,
            max_tokens=request.max_tokens,
            logprobs=request.logprobs is not None,
            **settings,
        )
        for prompt in prompts
    ]


@dataclass
class CompletionStream:
    """A started text completion: its chunks, ready to be framed as SSE or collected."""

    chunks: AsyncIterator[Completion]
    id: str
    created: int
    model: str


async def open_completion(
    adapter: Adapter,
    request: CompletionRequest,
    include_usage: bool,
    timeout: float | None,
    model: ModelSpec,
) -> CompletionStream:
    """Start every prompt's generation; raise a ``GatewayError`` if any cannot start (the others are
    then stopped)."""
    params = completion_params(request, model)
    opened = await asyncio.gather(
        *(start_generation(adapter, p, timeout) for p in params), return_exceptions=True
    )
    failure = next((result for result in opened if isinstance(result, BaseException)), None)
    streams = [result for result in opened if isinstance(result, Generation)]
    if failure is not None:
        for stream in streams:
            await stream.events.aclose()
        raise failure
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    prompts = [p.prompt or "" for p in params]
    chunks = _chunks(streams, prompts, request, include_usage, completion_id, created, adapter.info.id)
    return CompletionStream(chunks, completion_id, created, adapter.info.id)


@dataclass
class _Offsets:
    """Where each choice's text has got to, for the ``text_offset`` of its logprobs."""

    offsets: dict[int, int] = field(default_factory=dict)

    def advance(self, index: int, tokens: list[str]) -> list[int]:
        start = self.offsets.get(index, 0)
        positions = []
        for token in tokens:
            positions.append(start)
            start += len(token)
        self.offsets[index] = start
        return positions


async def _chunks(
    streams: list[Generation],
    prompts: list[str],
    request: CompletionRequest,
    include_usage: bool,
    completion_id: str,
    created: int,
    model: str,
) -> AsyncIterator[Completion]:
    usage_field = None if include_usage else msgspec.UNSET
    totals = [0, 0, 0]  # prompt, completion, cached tokens
    offsets = _Offsets()

    def chunk(choice: CompletionChoice) -> Completion:
        return Completion(
            id=completion_id,
            created=created,
            model=model,
            choices=[choice],
            system_fingerprint=SYSTEM_FINGERPRINT,
            usage=usage_field,
        )

    async with AsyncExitStack() as stack:
        for stream in streams:  # closed in every case, even those a vanished client never reached
            await stack.enter_async_context(aclosing(stream.events))
        for number, stream in enumerate(streams):
            if request.echo:  # the echoed prompt opens each of the prompt's choices
                for choice in range(request.n):
                    index = number * request.n + choice
                    offsets.advance(index, [prompts[number]])
                    yield chunk(CompletionChoice(text=prompts[number], index=index))
            async for event in stream.events:
                if isinstance(event, Usage):
                    totals[0] += event.prompt_tokens
                    totals[1] += event.completion_tokens
                    totals[2] += event.cached_tokens or 0
                    continue
                piece = _choice(number * request.n + event.index, event, offsets)
                if piece is not None:
                    yield chunk(piece)
    if include_usage:
        final = Completion(
            id=completion_id, created=created, model=model, choices=[], system_fingerprint=SYSTEM_FINGERPRINT
        )
        final.usage = CompletionUsage(
            prompt_tokens=totals[0],
            completion_tokens=totals[1],
            total_tokens=totals[0] + totals[1],
            prompt_tokens_details=PromptTokensDetails(cached_tokens=totals[2]),
        )
        yield final


def _choice(index: int, event: object, offsets: _Offsets) -> CompletionChoice | None:
    """One event as a text completion choice; ``None`` for what a text completion does not send (a raw
    prompt is never parsed for reasoning or tool calls, so those do not come)."""
    if isinstance(event, TextDelta):
        return CompletionChoice(text=event.text, index=index) if event.text else None
    if isinstance(event, TokenLogprobs):
        count = min(len(event.tokens), len(event.logprobs))
        tokens = list(event.tokens[:count])
        logprobs = CompletionLogprobs(
            tokens=tokens,
            token_logprobs=list(event.logprobs[:count]),
            text_offset=offsets.advance(index, tokens),
        )
        return CompletionChoice(text="", index=index, logprobs=logprobs)
    if isinstance(event, Finished):
        return CompletionChoice(text="", index=index, finish_reason=event.reason)
    return None


async def collect_completion(stream: CompletionStream) -> Completion:
    """The non-streaming answer, assembled from the same chunks (opened with ``include_usage``)."""
    texts: dict[int, list[str]] = {}
    reasons: dict[int, FinishReason] = {}
    logprobs: dict[int, CompletionLogprobs] = {}
    usage: CompletionUsage | None = None
    async with aclosing(stream.chunks) as chunks:
        async for chunk in chunks:
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                texts.setdefault(choice.index, []).append(choice.text)
                if choice.finish_reason is not None:
                    reasons[choice.index] = choice.finish_reason
                if choice.logprobs is not None:
                    whole = logprobs.setdefault(
                        choice.index, CompletionLogprobs(tokens=[], token_logprobs=[], text_offset=[])
                    )
                    whole.tokens += choice.logprobs.tokens
                    whole.token_logprobs += choice.logprobs.token_logprobs
                    whole.text_offset += choice.logprobs.text_offset
    choices = [
        CompletionChoice(
            text="".join(parts),
            index=index,
            logprobs=logprobs.get(index),
            finish_reason=reasons.get(index, "stop"),
        )
        for index, parts in sorted(texts.items())
    ]
    return Completion(
        id=stream.id,
        created=stream.created,
        model=stream.model,
        choices=choices,
        system_fingerprint=SYSTEM_FINGERPRINT,
        usage=usage,
    )
