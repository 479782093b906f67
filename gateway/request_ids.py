"""Request ids: one per request, from the client's ``X-Request-Id`` when it is sane, else generated.

The id is kept in a context variable for the life of the request (the log filter in ``logs.py`` reads
it) and sent back as ``X-Request-Id`` on every response, errors, 404s and streams included.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: the engine processes import this module (via logs) without Litestar
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
MAX_LENGTH = 128
# Printable ASCII without spaces: safe in a header, in a log line and in a JSON string as is.
_SANE = re.compile(rf"[\x21-\x7e]{{1,{MAX_LENGTH}}}")
_STATE_KEY = "openarc.request_id"

current_request_id: ContextVar[str | None] = ContextVar("openarc_request_id", default=None)
"""The id of the request being handled in this context; ``None`` outside requests."""


def request_id(scope: Scope) -> str:
    """The request's id: decided once per request and remembered in its scope."""
    state = scope.setdefault("state", {})
    rid = state.get(_STATE_KEY)
    if rid is None:
        rid = state[_STATE_KEY] = _from_headers(scope) or uuid.uuid4().hex
    return rid


def _from_headers(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == HEADER.encode():
            text = value.decode("latin-1").strip()
            return text if _SANE.fullmatch(text) else None
    return None


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Litestar middleware: the request id is in the context for everything the handler does."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        token = current_request_id.set(request_id(scope))
        try:
            await app(scope, receive, send)
        finally:
            current_request_id.reset(token)

    return middleware


async def add_request_id_header(message: Message, scope: Scope) -> None:
    """``before_send`` hook: every response carries its ``X-Request-Id``.

    A hook rather than the middleware's job because Litestar sends router 404s and 405s without running
    route middleware; hooks see every message. Unrouted requests get the id into the context here, so
    uvicorn's access log line (written inside ``send``) carries it too.
    """
    if message["type"] != "http.response.start" or scope.get("type") != "http":
        return
    rid = request_id(scope)
    if current_request_id.get() is None:
        current_request_id.set(rid)
    message["headers"] = [*message.get("headers", ()), (HEADER.encode(), rid.encode())]
