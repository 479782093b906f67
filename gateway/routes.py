"""Thin HTTP handlers: decode, look up the model, hand over to its dialect; errors are raised, not built."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from litestar import Request, Response, get, head, post
from litestar.response import Stream

from .dialects.chat import collect, open_chat, to_params
from .dialects.completions import collect_completion, open_completion
from .encoders import create_embeddings, require_kind, rerank
from .errors import NotFoundError
from .generation import unless_disconnected
from .json_body import json_body
from .registry import ModelEntry, ModelRegistry
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
    async with registry.use(chat.model, chat.keep_alive) as served:
        adapter = served.adapter
        require_kind(adapter.info, "chat")
        timeout = served.timeout
        params = to_params(chat, adapter.info.output_format, served.spec)
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
    async with registry.use(body.model, body.keep_alive) as served:
        adapter = served.adapter
        require_kind(adapter.info, "chat")
        timeout = served.timeout
        model = served.spec
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
    async with registry.use(body.model, body.keep_alive) as served:
        adapter = served.adapter
        work = create_embeddings(adapter, body, served.timeout)
        return Response(await unless_disconnected(request, work))


@post(["/v1/rerank", "/rerank"], status_code=200)
async def create_rerank(request: Request, registry: ModelRegistry) -> Response[RerankResponse]:
    """Order documents by relevance to a query with a rerank (cross-encoder) model."""
    body = decode_rerank_request(await json_body(request))
    async with registry.use(body.model, body.keep_alive) as served:
        adapter = served.adapter
        work = rerank(adapter, body, served.timeout)
        return Response(await unless_disconnected(request, work))


def _model(entry: ModelEntry, name: str | None = None) -> Model:
    info = entry.adapter.info if entry.adapter is not None else None
    return Model(
        id=name or entry.spec.id,
        created=info.created if info else _file_time(entry.path),
        owned_by=info.owned_by if info else "openarc",
        device=entry.spec.device,
        context_length=entry.context_length,
        state=entry.state,
        kind=entry.kind,  # type: ignore[arg-type]  # a ModelKind, or "auto" until known
        inference_precision=info.inference_precision if info else None,
        size_bytes=entry.size_bytes,
        memory_bytes=entry.memory,
    )


def _file_time(path: Path | None) -> int:
    try:
        return int(path.stat().st_mtime) if path is not None else 0
    except OSError:
        return 0


@get("/v1/models")
async def list_models(registry: ModelRegistry) -> ModelList:
    """List every model this server can serve, loaded or not (``state``): a request to an unloaded
    one loads it."""
    models = [_model(entry) for entry in registry.entries()]
    aliases = [_model(entry, name) for name, entry in registry.listed_aliases()]
    return ModelList(data=models + aliases)


@get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, registry: ModelRegistry) -> Model:
    """Describe one model; 404 ``model_not_found`` if the server has no such model."""
    return _model(registry.entry(model_id.lstrip("/")))


@get("/health")
async def health(registry: ModelRegistry) -> Health:
    """Liveness: 200 while the HTTP server runs, with each ready model's current load."""
    activity = [
        (e.spec.id, e.adapter.activity()) for e in registry.entries() if e.state == "ready" and e.adapter
    ]
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
