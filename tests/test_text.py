"""Incremental detokenization and stop strings, with the demo model's real tokenizer."""

from __future__ import annotations

import openvino_genai
import pytest

from adapters.text import IncrementalDetokenizer, StopMatcher, detokenize_batch
from gateway.config import ServerConfig
from gateway.sources import ensure_demo_model

SAMPLES = [
    "héllo wörld",
    "日本語のテキスト",
    "emoji 🎉🚀 mixed ünïcödé",
    "plain ascii text, with punctuation!",
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return openvino_genai.Tokenizer(str(ensure_demo_model(ServerConfig().cache_path)))


@pytest.mark.parametrize("text", SAMPLES)
def test_token_by_token_deltas_rebuild_the_text(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False).input_ids.data[0].tolist()
    assert len(ids) > 3
    calls = []

    def decode(tokens):
        calls.append(len(tokens))
        return tokenizer.decode(tokens)

    detokenizer = IncrementalDetokenizer(decode)
    deltas = [detokenizer.push([i]) for i in ids] + [detokenizer.flush()]
    assert "".join(deltas) == tokenizer.decode(ids) == text
    assert all("\ufffd" not in d for d in deltas), "no delta splits a UTF-8 character"
    # Incremental: each decode sees a short window, never the whole output.
    assert max(calls) <= 6


def test_long_output_decodes_in_constant_windows(tokenizer):
    ids = tokenizer.encode("word " * 500, add_special_tokens=False).input_ids.data[0].tolist()
    sizes = []
    detokenizer = IncrementalDetokenizer(lambda t: sizes.append(len(t)) or tokenizer.decode(t))
    text = "".join(detokenizer.push([i]) for i in ids) + detokenizer.flush()
    assert text == "word " * 500
    assert max(sizes) <= 3


@pytest.mark.parametrize(
    ("pieces", "stops", "expected", "stopped"),
    [
        (["Hello", " wor", "ld"], ["world"], "Hello ", True),
        (["abc", "de"], ["cd"], "ab", True),
        (["The capital"], ["ital"], "The cap", True),
        (["no", " stop", " here"], ["xyz"], "no stop here", False),
        (["ends with pre"], ["prefix"], "ends with pre", False),
        (["a", "b"], [], "ab", False),
        (["x END y"], ["END", "x"], "", True),
    ],
)
def test_stop_matcher(pieces, stops, expected, stopped):
    matcher = StopMatcher(stops)
    out = "".join(matcher.feed(p) for p in pieces) + matcher.flush()
    assert out == expected
    assert matcher.stopped is stopped


def test_stop_matcher_holds_back_only_possible_prefixes():
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("abc ST") == "abc "
    assert matcher.feed("X") == "STX"
    assert matcher.feed("STO") == ""
    assert matcher.feed("P and more") == ""
    assert matcher.stopped


def test_batch_detokenization_matches_one_by_one(tokenizer):
    texts = [tokenizer.encode(t, add_special_tokens=False).input_ids.data[0].tolist() for t in SAMPLES]
    singles = [IncrementalDetokenizer(tokenizer.decode) for _ in texts]
    batched = [IncrementalDetokenizer(tokenizer.decode) for _ in texts]
    out_single = [""] * len(texts)
    out_batched = [""] * len(texts)
    calls = []

    def decode_batch(windows):
        calls.append(len(windows))
        return tokenizer.decode(windows)

    for step in range(max(len(ids) for ids in texts)):
        work = [(d, ids[step : step + 1]) for d, ids in zip(batched, texts, strict=True)]
        for i, text in enumerate(detokenize_batch(work, decode_batch)):
            out_batched[i] += text
        for i, (d, ids) in enumerate(zip(singles, texts, strict=True)):
            out_single[i] += d.push(ids[step : step + 1])
    out_batched = [o + d.flush() for o, d in zip(out_batched, batched, strict=True)]
    out_single = [o + d.flush() for o, d in zip(out_single, singles, strict=True)]
    assert out_batched == out_single == SAMPLES
    assert calls == [2 * len(texts)] * len(calls), "one decode call per step for every sequence"
