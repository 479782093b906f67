"""Teacher-forced quality figures (``adapters.export.quality``) on the demo model's real exports.

The logits read through the OpenVINO runtime, window by window from a reset KV cache, are checked
against transformers running the same weights; the figures of a model against itself are checked to be
zero divergence and full agreement; windows are checked to score every token once. The comparisons of
different exports (int8 close to fp16, int4 far) are in ``test_export``'s compare and sweep tests.
"""

from __future__ import annotations

import numpy as np
import pytest
from encoder_models import minilm_export
from test_export import demo_gguf, exports, short_text, transformers_folder  # noqa: F401 - fixtures

from adapters.export.quality import (
    DEFAULT_CONTEXT,
    QualityError,
    ReferenceRun,
    TeacherForcedModel,
    default_text,
    tokenize,
    windows,
)


@pytest.fixture(scope="module")
def fp16_model(exports) -> TeacherForcedModel:  # noqa: F811 - the fixture imported above
    # Pieces of 100 tokens: the KV cache carries windows across piece boundaries at odd places. f32, for
    # exactness: bf16 (OpenVINO's default on CPUs that have it) agreed on the top token 97.0 % of the time.
    return TeacherForcedModel(exports["fp16"], piece=100, precision="f32")


@pytest.fixture(scope="module")
def short_ids(exports, short_text) -> np.ndarray:  # noqa: F811
    return tokenize(exports["fp16"], short_text.read_text())


def test_logits_equal_transformers_on_the_same_weights(fp16_model, short_ids, transformers_folder):  # noqa: F811
    """The fp16 export read through the runtime gives transformers' distributions (fp32 weights, dequantized
    from the same GGUF): what the figures stand on."""
    import torch
    from transformers import AutoModelForCausalLM

    window, scored_from = short_ids[:300], 64
    mine = fp16_model.log_probs(window, scored_from)
    assert mine.shape == (300 - scored_from, fp16_model.vocabulary)
    model = AutoModelForCausalLM.from_pretrained(transformers_folder, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor(window[None, :])).logits[0, scored_from - 1 : -1]
    theirs = torch.log_softmax(logits.float(), dim=-1).numpy()
    divergence = np.sum(np.exp(theirs) * (theirs - mine), axis=1)
    # Measured: 1.9e-5 nats on average; fp16 weights against fp32 account for it. A position or cache
    # mix-up gives whole nats.
    assert divergence.mean() < 1e-3 and divergence.max() < 0.05
    assert np.mean(mine.argmax(axis=1) == theirs.argmax(axis=1)) > 0.98


def test_each_window_starts_from_an_empty_cache(fp16_model, short_ids):
    first, second = short_ids[:200], short_ids[200:400]
    before = fp16_model.log_probs(first, 100)
    fp16_model.log_probs(second, 100)
    assert np.allclose(fp16_model.log_probs(first, 100), before, atol=1e-4)


def test_a_model_against_itself_diverges_by_nothing(fp16_model, short_ids, tmp_path):
    run = ReferenceRun(fp16_model, short_ids, DEFAULT_CONTEXT, tmp_path)
    try:
        figures = run.compare(fp16_model)
    finally:
        run.close()
    assert figures.positions == run.figures.positions == len(short_ids) - DEFAULT_CONTEXT // 4
    # The stored reference is float16: its rounding is all that may show.
    assert figures.kl_mean < 1e-4 and figures.kl_p99 < 1e-3
    assert figures.top1_agreement == 1.0
    assert figures.perplexity == pytest.approx(run.figures.perplexity, rel=1e-3)
    assert 1 < figures.perplexity < 100


@pytest.mark.parametrize("length", [10, 129, 130, 511, 512, 513, 3000])
def test_windows_score_every_token_after_the_first_quarter_window_once(length):
    if length <= DEFAULT_CONTEXT // 4 + 1:
        with pytest.raises(QualityError, match="at least 130 are needed"):
            list(windows(np.arange(length), DEFAULT_CONTEXT))
        return
    plan = list(windows(np.arange(length), DEFAULT_CONTEXT))
    scored = np.concatenate([window[start:] for window, start in plan])
    assert scored.tolist() == list(range(DEFAULT_CONTEXT // 4, length))
    assert all(len(window) <= DEFAULT_CONTEXT and start == DEFAULT_CONTEXT // 4 for window, start in plan)


def test_the_shipped_text_is_long_and_varied(exports):  # noqa: F811
    text = default_text()
    assert len(tokenize(exports["fp16"], text)) > 3000
    for sample in ("```python", "SELECT ", '"replicas": 3', "| 1911 | 52 | 219 | 4.21 |", "Dear Marguerite"):
        assert sample in text


def test_an_encoder_is_not_a_decoder():
    with pytest.raises(QualityError, match="not a decoder's with a KV cache"):
        TeacherForcedModel(minilm_export())


def test_kl_and_top1_are_exact(exports, short_ids, tmp_path):  # noqa: F811
    """Compare's figures against a computation here: the KL of an export against itself is 0, and int8
    against fp16 on a fixed text gives the mean KL and top-1 agreement numpy gives from the two models'
    log-probabilities (the reference is kept as float16 on disk, hence the tolerance)."""
    ids, context = short_ids[:400], 128
    fp16 = TeacherForcedModel(exports["fp16"], precision="f32")
    int8 = TeacherForcedModel(exports["int8"], precision="f32")
    run = ReferenceRun(fp16, ids, context, tmp_path)
    try:
        itself, measured = run.compare(fp16), run.compare(int8)
    finally:
        run.close()
    assert itself.kl_mean < 1e-5 and itself.top1_agreement == 1.0
    divergences, agreements = [], []
    for window, scored_from in windows(ids, context):
        theirs, mine = fp16.log_probs(window, scored_from), int8.log_probs(window, scored_from)
        divergences.append(np.sum(np.exp(theirs) * (theirs - mine), axis=1))
        agreements.append(theirs.argmax(axis=1) == mine.argmax(axis=1))
    expected = np.concatenate(divergences)
    assert measured.positions == len(expected) == len(ids) - context // 4
    assert measured.kl_mean == pytest.approx(expected.mean(), rel=1e-2)
    assert measured.kl_p99 == pytest.approx(np.percentile(expected, 99), rel=2e-2)
    assert measured.top1_agreement == pytest.approx(np.concatenate(agreements).mean(), abs=1 / len(expected))
    assert measured.kl_mean > 1e-4, "int8 and fp16 differ: a KL of 0 here would mean one model was run twice"
