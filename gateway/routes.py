"""Thin HTTP handlers: decode, look up the model, hand over to its dialect; errors are raised, not built."""

from __future__ import annotations

from importlib.resources import files

from litestar import Request, Response, get, head, post
from litestar.response import Stream

from adapters.base import ModelInfo

from .dialects.chat import collect, open_chat, to_params
from .dialects.completions import collect_completion, open_completion
from .encoders import create_embeddings, require_kind, rerank
from .errors import NotFoundError
from .generation import unless_disconnected
from .json_body import json_body
from .registry import ModelRegistry
from .schemas import (
    ChatCompletion,
    Completion,
    CreateEmbeddingResponse,
    Health,
    Model,
    ModelActivity,
    ModelList,
    ModelReadiness,
    Readiness,
    RerankResponse,
    decode_chat_request,
    decode_completion_request,
    decode_embedding_request,
    decode_rerank_request,
)
from .sse import HEADERS as SSE_HEADERS
from .sse import data_events


@post("/v1/chat/completions", status_code=200)
async def create_chat_completion(
    request: Request, registry: ModelRegistry
) -> Response[ChatCompletion] | Stream:
    """Create a chat completion, streamed as server-sent events when ``stream`` is true."""
    # Decoded here rather than by Litestar: strict msgspec decoding makes a wrongly typed field a 400
    # that names the field, where Litestar's lenient decoding would coerce "8" to 8.
    chat = decode_chat_request(await json_body(request))
    adapter = registry.get(chat.model)
    require_kind(adapter.info, "chat")
    timeout = registry.request_timeout(chat.model)
    params = to_params(chat, adapter.info.output_format, registry.spec(chat.model))
    if chat.stream:
        include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
        stream = await open_chat(adapter, params, include_usage, timeout)
        return Stream(data_events(stream.chunks), media_type="text/event-stream", headers=SSE_HEADERS)

    async def complete() -> ChatCompletion:
        return await collect(await open_chat(adapter, params, include_usage=True, timeout=timeout))

    return Response(await unless_disconnected(request, complete()))


@post("/v1/completions", status_code=200)
async def create_completion(request: Request, registry: ModelRegistry) -> Response[Completion] | Stream:
    """Create a text completion (legacy API) for one prompt or a list; SSE when ``stream`` is true."""
    body = decode_completion_request(await json_body(request))
    adapter = registry.get(body.model)
    require_kind(adapter.info, "chat")
    timeout = registry.request_timeout(body.model)
    model = registry.spec(body.model)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        stream = await open_completion(adapter, body, include_usage, timeout, model)
        return Stream(data_events(stream.chunks), media_type="text/event-stream", headers=SSE_HEADERS)

    async def complete() -> Completion:
        return await collect_completion(await open_completion(adapter, body, True, timeout, model))

    return Response(await unless_disconnected(request, complete()))


@post("/v1/embeddings", status_code=200)
async def create_embedding(request: Request, registry: ModelRegistry) -> Response[CreateEmbeddingResponse]:
    """Embed a string, a list of strings or token arrays with an embedding model."""
    body = decode_embedding_request(await json_body(request))
    adapter = registry.get(body.model)
    work = create_embeddings(adapter, body, registry.request_timeout(body.model))
    return Response(await unless_disconnected(request, work))


@post(["/v1/rerank", "/rerank"], status_code=200)
async def create_rerank(request: Request, registry: ModelRegistry) -> Response[RerankResponse]:
    """Order documents by relevance to a query with a rerank (cross-encoder) model."""
    body = decode_rerank_request(await json_body(request))
    adapter = registry.get(body.model)
    work = rerank(adapter, body, registry.request_timeout(body.model))
    return Response(await unless_disconnected(request, work))


def _model(info: ModelInfo) -> Model:
    return Model(
        id=info.id,
        created=info.created,
        owned_by=info.owned_by,
        device=info.device,
        context_length=info.context_length,
        kind=info.kind,
        inference_precision=info.inference_precision,
    )


@get("/v1/models")
async def list_models(registry: ModelRegistry) -> ModelList:
    """List the models this server serves."""
    return ModelList(data=[_model(info) for info in [*registry.models(), *registry.listed_aliases()]])


@get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, registry: ModelRegistry) -> Model:
    """Describe one model; 404 ``model_not_found`` if it is not served."""
    return _model(registry.get(model_id.lstrip("/")).info)


@get("/health")
async def health(registry: ModelRegistry) -> Health:
    """Liveness: 200 while the HTTP server runs, with each ready model's current load."""
    activity = [(info.id, registry.get(info.id).activity()) for info in registry.models()]
    return Health(models=[ModelActivity(id=i, in_flight=a.in_flight, running=a.running) for i, a in activity])


@get("/ready")
async def ready(registry: ModelRegistry) -> Response[Readiness]:
    """Readiness: 200 while every model the server was started with is ready; 503 naming those that are
    not. Models loaded through ``/admin`` do not count (see ``ModelRegistry.readiness``)."""
    waiting = [ModelReadiness(id=e.spec.id, state=e.state, reason=e.error) for e in registry.readiness()]
    readiness = Readiness(status="not_ready" if waiting else "ready", models=waiting)
    return Response(readiness, status_code=503 if waiting else 200)


_CHAT_PAGE = files("gateway").joinpath("static/chat.html")


@get("/", include_in_schema=False)
async def chat_page(request: Request) -> Response[bytes]:
    """A chat page for trying the models in a browser (plain HTML and JavaScript, works offline)."""
    if not request.app.state.config.chat_page:
        raise NotFoundError("No chat page here: the server runs with --no-chat-page.")
    return Response(_CHAT_PAGE.read_bytes(), media_type="text/html; charset=utf-8")


@head("/", include_in_schema=False, media_type="text/html")
async def chat_page_head(request: Request) -> None:
    """``HEAD /`` as ``GET /`` answers, without the page: Claude Code sends it first to see that the
    server is there, and a 405 reads as a broken server in logs."""
    if not request.app.state.config.chat_page:
        raise NotFoundError("No chat page here: the server runs with --no-chat-page.")


ROUTES = [
    chat_page,
    chat_page_head,
    create_chat_completion,
    create_completion,
    create_embedding,
    create_rerank,
    list_models,
    retrieve_model,
    health,
    ready,
]
