"""``/v1/embeddings`` and ``/v1/rerank``: wire requests to an encoder adapter's calls and back.

An embedding model's vectors are returned as floats or, as the ``openai`` SDK asks by default, as
base64 of float32 little-endian bytes (what OpenAI sends). Rerank takes Cohere's and Jina's shape.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any, Protocol

import msgspec
import numpy as np

from adapters.base import AdapterError, ModelInfo

from .errors import InvalidRequestError, RequestTimeoutError, from_adapter_error
from .schemas import (
    CreateEmbeddingResponse,
    Embedding,
    EmbeddingRequest,
    EmbeddingUsage,
    RerankDocument,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankUsage,
)

_ARTICLES = {"chat": "a", "embedding": "an", "rerank": "a"}
_ENDPOINTS = {"chat": "/v1/chat/completions", "embedding": "/v1/embeddings", "rerank": "/v1/rerank"}


class Encoder(Protocol):
    """What the embedding and rerank routes need of a model's adapter (``EncoderAdapter`` is one)."""

    info: ModelInfo

    async def embed(self, texts: list[Any]) -> Any:
        """Embed ``texts`` (strings or token id arrays): a result with ``vectors``, one row per text, and
        ``tokens``, each text's token count."""
        ...

    async def rerank(self, query: str, documents: list[str]) -> Any:
        """Score every document against ``query``: a result with ``scores``, (index, score) pairs best first,
        and ``tokens``, the tokens it took."""
        ...


def require_kind(info: ModelInfo, kind: str) -> None:
    """A request to a model of another kind is the client's mistake: a 400 saying where to go."""
    if info.kind != kind:
        what = f"{_ARTICLES[info.kind]} {info.kind} model"
        raise InvalidRequestError(
            f"'{info.id}' is {what}: send its requests to {_ENDPOINTS[info.kind]}", param="model"
        )


async def create_embeddings(
    adapter: Encoder, request: EmbeddingRequest, timeout: float | None
) -> CreateEmbeddingResponse:
    """``/v1/embeddings``: the inputs' vectors, as floats or base64 as asked; a ``dimensions`` other than
    the model's is refused."""
    require_kind(adapter.info, "embedding")
    inputs = embedding_inputs(request.input)
    if request.dimensions is not None and request.dimensions != adapter.info.dimensions:
        raise InvalidRequestError(
            f"'{adapter.info.id}' makes {adapter.info.dimensions}-dimensional embeddings and cannot shorten "
            "them (it was not trained for shorter ones)",
            param="dimensions",
        )
    result = await _within(timeout, adapter.embed(inputs))
    encode = _base64 if request.encoding_format == "base64" else _floats
    data = [Embedding(index=i, embedding=encode(row)) for i, row in enumerate(result.vectors)]
    tokens = sum(result.tokens)
    return CreateEmbeddingResponse(
        data=data, model=adapter.info.id, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
    )


def embedding_inputs(value: str | list[Any]) -> list[str | list[int]]:
    """The inputs as texts or token arrays: a string, strings, one token array, or token arrays."""
    items: list[Any] = [value] if isinstance(value, str) else list(value)
    if all(isinstance(item, int) for item in items):
        items = [items]  # one token array
    elif not all(isinstance(item, str) for item in items) and not all(isinstance(i, list) for i in items):
        raise InvalidRequestError(
            "input must be a string, a list of strings, a token array or a list of token arrays, not a mix",
            param="input",
        )
    for index, item in enumerate(items):
        if not item:
            raise InvalidRequestError(
                "input must not contain an empty string or token array", f"input[{index}]"
            )
        if isinstance(item, list) and any(token < 0 for token in item):
            raise InvalidRequestError("token ids must not be negative", param=f"input[{index}]")
    return items


def _floats(row: np.ndarray) -> list[float]:
    return row.tolist()


def _base64(row: np.ndarray) -> str:
    return base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")


async def rerank(adapter: Encoder, request: RerankRequest, timeout: float | None) -> RerankResponse:
    """``/v1/rerank``: the documents' scores, best first, cut to ``top_n``, with their text if
    ``return_documents`` asks for it."""
    require_kind(adapter.info, "rerank")
    documents = [d.text if isinstance(d, RerankDocument) else d for d in request.documents]
    ranking = await _within(timeout, adapter.rerank(request.query, documents))
    scores = ranking.scores[: request.top_n] if request.top_n is not None else ranking.scores
    results = [
        RerankResult(
            index=index,
            relevance_score=score,
            document=RerankDocument(text=documents[index]) if request.return_documents else msgspec.UNSET,
        )
        for index, score in scores
    ]
    return RerankResponse(
        id=f"rerank-{uuid.uuid4().hex}",
        model=adapter.info.id,
        results=results,
        usage=RerankUsage(total_tokens=ranking.tokens),
    )


async def _within(timeout: float | None, work: Any) -> Any:
    """Await the adapter's call, mapping its errors and the model's request_timeout to client errors."""
    try:
        async with asyncio.timeout(timeout):
            return await work
    except TimeoutError:
        raise RequestTimeoutError("The request took longer than this model's request_timeout.") from None
    except AdapterError as exc:
        raise from_adapter_error(exc) from exc
