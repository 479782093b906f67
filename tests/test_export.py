"""openarc export: the demo GGUF (int8, int4), then serving, listing and comparing the exports; an
embedding model and a reranker (see ``encoder_models``), then loading them in openvino-genai's pipelines.

Exports take minutes on 2 cores, so they are cached under ~/.cache/openarc/test-exports, keyed by the
export code and the versions of the libraries that shape the result (``encoder_models.export_cache``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from encoder_models import (
    CACHE_ROOT,
    export_cache,
    minilm_export,
    minilm_source,
    openarc,
    reranker_export,
    reranker_source,
)
from test_admin import AUTH, ask

from adapters.export.optimum_intel import MANIFEST, source_task
from gateway.sources import ensure_demo_model

PRESETS = ("int8", "int4")
SENTENCES = [
    "A man is eating food.",
    "The new movie is awesome.",
    "Quantum chromodynamics describes the strong interaction between quarks and gluons.",
]


@pytest.fixture(scope="session")
def demo_gguf() -> Path:
    return ensure_demo_model(CACHE_ROOT)


@pytest.fixture(scope="session")
def exports(demo_gguf) -> dict[str, Path]:
    folder = export_cache()
    made = {}
    for preset in PRESETS:
        output = folder / f"smollm2-{preset}"
        if not (output / MANIFEST).is_file():
            result = openarc("export", str(demo_gguf), str(output), "--preset", preset, "--force")
            assert result.returncode == 0, result.stderr[-3000:]
            assert result.stdout.strip().splitlines()[-1] == str(output)
        made[preset] = output
    return made


@pytest.fixture(scope="session")
def transformers_folder(demo_gguf) -> Path:
    """The demo model as a plain transformers folder (what a hub download looks like)."""
    import openvino_genai

    from adapters.export.gguf_source import gguf_to_transformers, openvino_encoder

    output = export_cache() / "smollm2-transformers"
    if not (output / "config.json").is_file():
        gguf_to_transformers(demo_gguf, output, openvino_encoder(openvino_genai.Tokenizer(str(demo_gguf))))
    return output


def manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text())


def test_manifests_record_how_each_export_was_made(exports, demo_gguf):
    int8, int4 = manifest(exports["int8"]), manifest(exports["int4"])
    assert int8["source"] == int4["source"] == str(demo_gguf)
    assert (int8["preset"], int8["options"]["weight_format"]) == ("int8", "int8")
    assert (int4["preset"], int4["options"]["weight_format"]) == ("int4", "int4")
    # int4's default group size 128 does not divide the hidden size 576: a valid one is picked, and said.
    assert int4["options"]["group_size"] == 64
    assert any("group size 128 does not divide" in note for note in int4["notes"])
    for made in (int8, int4):
        assert any("rebuilt it from the GGUF vocabulary" in note for note in made["notes"])
        assert made["tokenizer_check"]["identical"] == made["tokenizer_check"]["samples"] >= 10
        assert made["options"]["task"] == "text-generation" and made["tokenizer_check"]["chat_template"]
        assert made["versions"]["optimum-intel"] and made["versions"]["openvino"]
        assert made["duration_s"] > 0 and made["created"]
    for folder in exports.values():
        names = {p.name for p in folder.iterdir()}
        assert {"openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml"} <= names


@pytest.mark.parametrize("preset", PRESETS)
def test_export_serves_chat_requests(http, exports, preset):
    model_id = f"export-{preset}"
    loaded = http.post("/admin/models", headers=AUTH, json={"id": model_id, "source": str(exports[preset])})
    assert loaded.status_code == 200, loaded.text
    try:
        request = {
            "model": model_id,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "temperature": 0,
            "max_tokens": 30,
        }
        answer = http.post("/v1/chat/completions", json=request).json()
        assert "Paris" in answer["choices"][0]["message"]["content"]
        assert answer["choices"][0]["finish_reason"] == "stop", "the exported EOS ends the turn"
    finally:
        http.delete(f"/admin/models/{model_id}", headers=AUTH)


def test_models_command_lists_exports(exports):
    result = openarc("models", str(exports["int8"].parent))
    assert result.returncode == 0, result.stderr
    for preset, folder in exports.items():
        line = next(line for line in result.stdout.splitlines() if line.startswith(folder.name))
        assert "openvino-ir" in line and f"openarc export {preset}" in line and "8192" in line


def test_compare_fills_every_column(exports):
    result = openarc("compare", str(exports["int8"]), str(exports["int4"]))
    assert result.returncode == 0, result.stderr[-3000:]
    header, _, *rows = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert len(rows) == 2
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == len(header.strip("|").split("|"))
        assert all(cells) and not any(c in ("nan", "?") for c in cells), row
    assert rows[0].rstrip(" |").endswith("reference"), "int8 is the more precise export"
    assert rows[1].rstrip(" |").endswith("%")


def test_transformers_model_loads_only_with_the_export_flag(http, transformers_folder):
    spec = {"id": "hf-demo", "source": str(transformers_folder)}
    refused = http.post("/admin/models", headers=AUTH, json=spec)
    assert refused.status_code == 400
    assert "not an OpenVINO export" in refused.json()["error"]["message"]
    loaded = http.post("/admin/models", headers=AUTH, json={**spec, "export": True})
    assert loaded.status_code == 200, loaded.text
    try:
        assert "exported at load time: slow" in loaded.json()["warning"]
        assert ask(http, "hf-demo").status_code == 200
    finally:
        http.delete("/admin/models/hf-demo", headers=AUTH)


def test_failed_export_leaves_no_folder(tmp_path):
    output = tmp_path / "never"
    result = openarc("export", str(tmp_path), str(output), "--preset", "int8")
    assert result.returncode == 2
    assert "neither a transformers model folder nor a .gguf file" in result.stderr
    assert not output.exists() and not list(tmp_path.glob(".never.partial-*"))


@pytest.fixture(scope="session")
def minilm() -> Path:
    return minilm_export()


@pytest.fixture(scope="session")
def reranker() -> Path:
    return reranker_export()


def test_task_is_detected_from_the_source(demo_gguf):
    assert source_task(str(demo_gguf)) == "text-generation"
    assert source_task(str(minilm_source())) == "feature-extraction"
    assert source_task(str(reranker_source())) == "text-classification"


def test_embedding_export_carries_the_sentence_transformers_config(minilm):
    made = manifest(minilm)
    assert (made["preset"], made["options"]["task"], made["options"]["weight_format"]) == (
        "fp16",
        "feature-extraction",
        "fp16",
    )
    assert made["tokenizer_check"]["identical"] == made["tokenizer_check"]["samples"]
    assert made["tokenizer_check"]["chat_template"] is False, "encoders need no chat template"
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"):
        assert (minilm / name).read_bytes() == (minilm_source() / name).read_bytes()
    assert json.loads((minilm / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"]
    assert json.loads((minilm / "sentence_bert_config.json").read_text())["max_seq_length"] == 256
    names = {p.name for p in minilm.iterdir()}
    assert {"openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml"} <= names


def test_embedding_export_equals_transformers_mean_pooling(minilm):
    import openvino_genai
    import torch
    from transformers import AutoModel, AutoTokenizer

    config = openvino_genai.TextEmbeddingPipeline.Config(
        pooling_type=openvino_genai.TextEmbeddingPipeline.PoolingType.MEAN, normalize=True
    )
    pipeline = openvino_genai.TextEmbeddingPipeline(str(minilm), "CPU", config)
    embedded = np.array(pipeline.embed_documents(SENTENCES))
    assert np.allclose(np.array(pipeline.embed_query(SENTENCES[0])), embedded[0], atol=1e-6)

    tokenizer = AutoTokenizer.from_pretrained(minilm_source())
    tokens = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    mask = tokens["attention_mask"].unsqueeze(-1).float()

    def reference(model: torch.nn.Module) -> np.ndarray:
        with torch.no_grad():
            hidden = model.eval()(**tokens).last_hidden_state
        return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).numpy()

    # The export stores fp16 weights: with the same rounding, transformers gives the same vectors
    # (measured 1.4e-7); against the fp32 original the rounding alone accounts for about 2e-4.
    original = AutoModel.from_pretrained(minilm_source())
    assert np.abs(reference(original) - embedded).max() < 1e-3
    assert np.abs(reference(original.half().float()) - embedded).max() < 1e-4


def test_rerank_export_loads_in_the_rerank_pipeline(reranker):
    import openvino_genai
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    made = manifest(reranker)
    assert (made["options"]["task"], made["preset"]) == ("text-classification", "fp16")
    config = openvino_genai.TextRerankPipeline.Config()
    config.top_n = len(SENTENCES)
    query = "What do people eat?"
    ranked = openvino_genai.TextRerankPipeline(str(reranker), "CPU", config).rerank(query, SENTENCES)
    assert sorted(index for index, _ in ranked) == [0, 1, 2]
    scores = [score for _, score in ranked]
    assert scores == sorted(scores, reverse=True)

    source = reranker_source()
    tokens = AutoTokenizer.from_pretrained(source)([query] * 3, SENTENCES, padding=True, return_tensors="pt")
    # fp16 weights, as exported. The random model's scores are close together (about 0.12 ± 0.003), yet
    # thousands of times further apart than the export's error (3.6e-7 measured): the order is the same too.
    model = AutoModelForSequenceClassification.from_pretrained(source).eval().half().float()
    with torch.no_grad():
        expected = torch.sigmoid(model(**tokens).logits[:, 0]).numpy()
    assert max(abs(expected[index] - score) for index, score in ranked) < 1e-5
    assert [index for index, _ in ranked] == list(np.argsort(-expected))


@pytest.mark.parametrize(
    "flags", [("--task", "feature-extraction", "--awq"), ("--awq",)], ids=["given", "detected"]
)
def test_encoder_export_refuses_calibration(tmp_path, flags):
    output = tmp_path / "never"
    result = openarc("export", str(minilm_source()), str(output), *flags)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "openarc: error: --awq: data-aware compression applies to text-generation models only; "
        "export feature-extraction models with --preset fp16 (default), int8 or int4"
    ]
    assert not output.exists() and not list(tmp_path.glob(".never.partial-*"))
