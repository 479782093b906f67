"""Reading a request's JSON body: the one check every route that takes a body makes first."""

from __future__ import annotations

from litestar import Request

from .errors import UnsupportedMediaTypeError


async def json_body(request: Request) -> bytes:
    """The raw body, once its content type says JSON (or says nothing).

    A body sent as a form or multipart is a client mistake (``curl -d`` without a JSON content type):
    say so with 415 rather than a confusing parse error. The bytes are decoded by each route with its
    strict msgspec decoder, so that a wrongly typed field is a 400 naming it.
    """
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaTypeError(
            f"Unsupported content type '{media_type}': send the body as JSON with "
            "'Content-Type: application/json'."
        )
    return await request.body()
