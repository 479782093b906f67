"""Anthropic's Messages API routes: ``POST /v1/messages`` (streamed or not) and ``count_tokens``."""

from __future__ import annotations

import dataclasses

from litestar import Request, Response, post
from litestar.response import Stream

from ...encoders import require_kind
from ...errors import ERROR_SHAPE
from ...generation import count_prompt, start_generation, unless_disconnected
from ...json_body import json_body
from ...registry import ModelRegistry
from ...sse import HEADERS, typed_events
from ..chat import to_params
from .errors import anthropic_error
from .events import MessageEvents, new_message
from .request import to_chat_request
from .wire import Message, MessageTokensCount, decode_count_request, decode_message_request

_ANTHROPIC = {ERROR_SHAPE: anthropic_error}


@post(["/v1/messages", "/messages"], status_code=200, opt=_ANTHROPIC)
async def create_message(request: Request, registry: ModelRegistry) -> Response[Message] | Stream:
    """Create a message (Anthropic's Messages API), streamed as Anthropic's events when ``stream`` is true."""
    body = decode_message_request(await json_body(request))
    async with registry.use(body.model) as served:
        adapter = served.adapter
        require_kind(adapter.info, "chat")
        params = to_params(to_chat_request(body), adapter.info.output_format, served.spec)
        # Anthropic's max_tokens is a cap: its clients send 32000 whatever the model, so the answer stops at
        # the end of the context window rather than being refused.
        params = dataclasses.replace(params, fit_to_context=True)
        generation = await start_generation(adapter, params, served.timeout)
        builder = MessageEvents(new_message(generation.model), generation)
        if body.stream:
            events = typed_events(builder.events(), builder.error_event)
            return Stream(events, media_type="text/event-stream", headers=HEADERS)

        async def complete() -> Message:
            async for _ in builder.events():
                pass
            return builder.message

        return Response(await unless_disconnected(request, complete()))


@post(["/v1/messages/count_tokens", "/messages/count_tokens"], status_code=200, opt=_ANTHROPIC)
async def count_message_tokens(request: Request, registry: ModelRegistry) -> MessageTokensCount:
    """Count the tokens a message's input would take: the chat template and tools applied as generation
    would apply them."""
    body = decode_count_request(await json_body(request))
    async with registry.use(body.model) as served:
        adapter = served.adapter
        require_kind(adapter.info, "chat")
        params = to_params(to_chat_request(body), adapter.info.output_format, served.spec)
        counted = await count_prompt(adapter, params, served.timeout)
        return MessageTokensCount(input_tokens=len(counted.ids))


ROUTES = [create_message, count_message_tokens]
