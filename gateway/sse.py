"""Server-sent events framing, for the two styles the dialects speak.

OpenAI's chat and text completions send ``data: <json>`` lines and end with ``data: [DONE]``. The
Responses API and Anthropic's Messages API send typed events, ``event: <type>`` before each ``data:``
line, and no terminator. Either way, an error after the first byte cannot change the status any more:
it becomes one error event, in the dialect's shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import msgspec

from .errors import GatewayError, to_gateway_error

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""Sent with every stream: no caching, and no buffering by a proxy (nginx) in front."""

_encoder = msgspec.json.Encoder()


async def data_events(chunks: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    """OpenAI's framing: one ``data: <json>`` event per chunk, then ``data: [DONE]``."""
    try:
        async with aclosing(chunks) as opened:
            async for chunk in opened:
                yield b"data: " + _encoder.encode(chunk) + b"\n\n"
    except Exception as exc:  # noqa: BLE001 - every failure must reach the client as an error event
        yield b"data: " + _encoder.encode(to_gateway_error(exc).body()) + b"\n\n"
    yield b"data: [DONE]\n\n"


TypedEvent = tuple[str, Any]
"""An event's type and its body (a msgspec Struct or anything msgspec encodes)."""


async def typed_events(
    events: AsyncIterator[TypedEvent], error_event: Callable[[GatewayError], TypedEvent]
) -> AsyncIterator[bytes]:
    """``event: <type>`` and ``data: <json>`` per event; a failure becomes ``error_event(error)``."""
    try:
        async with aclosing(events) as opened:
            async for kind, body in opened:
                yield b"event: " + kind.encode() + b"\ndata: " + _encoder.encode(body) + b"\n\n"
    except Exception as exc:  # noqa: BLE001 - every failure must reach the client as an error event
        kind, body = error_event(to_gateway_error(exc))
        yield b"event: " + kind.encode() + b"\ndata: " + _encoder.encode(body) + b"\n\n"
