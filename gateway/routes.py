"""Thin HTTP handlers: decode, look up the model, hand over to ``streaming``; errors are raised, not built."""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.response import Stream

from adapters.base import ModelInfo

from .registry import ModelRegistry
from .schemas import ChatCompletion, Health, Model, ModelActivity, ModelList, decode_chat_request
from .streaming import collect, open_chunks, sse, unless_disconnected

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@post("/v1/chat/completions", status_code=200)
async def create_chat_completion(
    request: Request, registry: ModelRegistry
) -> Response[ChatCompletion] | Stream:
    """Create a chat completion, streamed as server-sent events when ``stream`` is true."""
    # Decoded here rather than by Litestar: strict msgspec decoding makes a wrongly typed field a 400
    # that names the field, where Litestar's lenient decoding would coerce "8" to 8.
    chat = decode_chat_request(await request.body())
    adapter = registry.get(chat.model)
    timeout = registry.request_timeout(chat.model)
    if chat.stream:
        include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
        stream = await open_chunks(adapter, chat, include_usage, timeout)
        return Stream(sse(stream), media_type="text/event-stream", headers=_SSE_HEADERS)

    async def complete() -> ChatCompletion:
        return await collect(await open_chunks(adapter, chat, include_usage=True, timeout=timeout))

    return Response(await unless_disconnected(request, complete()))


def _model(info: ModelInfo) -> Model:
    return Model(
        id=info.id,
        created=info.created,
        owned_by=info.owned_by,
        device=info.device,
        context_length=info.context_length,
    )


@get("/v1/models")
async def list_models(registry: ModelRegistry) -> ModelList:
    """List the models this server serves."""
    return ModelList(data=[_model(info) for info in registry.models()])


@get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, registry: ModelRegistry) -> Model:
    """Describe one model; 404 ``model_not_found`` if it is not served."""
    return _model(registry.get(model_id.lstrip("/")).info)


@get("/health")
async def health(registry: ModelRegistry) -> Health:
    """Liveness and readiness: 200 once the models are loaded, with each model's current load."""
    activity = [(info.id, registry.get(info.id).activity()) for info in registry.models()]
    return Health(models=[ModelActivity(id=i, in_flight=a.in_flight, running=a.running) for i, a in activity])


ROUTES = [create_chat_completion, list_models, retrieve_model, health]
