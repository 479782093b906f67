"""Speculative decoding (a model's ``speculative`` setting): the same answers as without it, and its
per-request settings checked. Speed is measured by ``python -m bench.speculative``, not here."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from conftest import ADMIN_KEY, DEMO, EXACT

from gateway.harness import Samples, parse, value

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
PROMPT_LOOKUP = "smollm2-prompt-lookup"
DRAFTED = "smollm2-drafted"
MODELS = {
    PROMPT_LOOKUP: {"method": "prompt_lookup", "num_assistant_tokens": 4, "max_ngram_size": 3},
    # The demo model drafts for itself: no smaller model with its tokenizer can be fetched here. It
    # shows the mechanism works; a real draft is a smaller model of the same family.
    DRAFTED: {"method": "draft_model", "draft_model": "demo", "num_assistant_tokens": 3},
}
# The speculative models compute exactly, as EXACT does, and answers are compared with EXACT's: checking
# several tokens in one step runs other kernels than one token a step, and with OpenVINO's dynamic
# quantization of activations (the default) that alone flipped the story's second token on a Xeon with
# AMX ("As I stood" against "As the last light").
EXACT_SETTINGS = {"inference_precision": "f32", "properties": {"DYNAMIC_QUANTIZATION_GROUP_SIZE": 0}}
QUOTING = [
    {
        "role": "user",
        "content": "Repeat this text exactly: The river runs north past the old mill, then turns east "
        "toward the harbour, where the fishing boats wait for the tide.",
    }
]
STORY = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


@pytest.fixture(scope="module")
def speculative_models(http: httpx.Client) -> Iterator[list[str]]:
    for model_id, speculative in MODELS.items():
        spec = {"id": model_id, "source": "demo", "speculative": speculative, **EXACT_SETTINGS}
        response = http.post("/admin/models", headers=AUTH, json=spec, timeout=600)
        assert response.status_code == 200, response.text
    yield list(MODELS)
    for model_id in MODELS:
        http.delete(f"/admin/models/{model_id}", headers=AUTH)


def greedy(client: openai.OpenAI, model: str, messages: list[dict], stream: bool = False, **extra) -> str:
    kwargs = {"model": model, "messages": messages, "max_tokens": 48, "temperature": 0, "extra_body": extra}
    if stream:
        chunks = client.chat.completions.create(stream=True, **kwargs)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return client.chat.completions.create(**kwargs).choices[0].message.content


@pytest.mark.parametrize("model", [PROMPT_LOOKUP, DRAFTED])
@pytest.mark.parametrize("stream", [False, True])
def test_speculation_keeps_the_greedy_answer(client, speculative_models, model, stream):
    assert greedy(client, model, QUOTING, stream) == greedy(client, EXACT, QUOTING)
    # Checking several guessed tokens in one step is not bit-identical to one token a step (other matrix
    # shapes, other rounding), so at a near-tie the greedy choice can flip: this story kept the first
    # ~95 characters, then the plain model wrote "," where the speculative one wrote ".". Only a long
    # shared start is required of an open-ended answer.
    speculative, plain = greedy(client, model, STORY, stream), greedy(client, EXACT, STORY)
    shared = next((i for i, (a, b) in enumerate(zip(speculative, plain, strict=False)) if a != b), len(plain))
    assert shared >= 40, (speculative, plain)


def test_per_request_settings(client, speculative_models):
    expected = greedy(client, EXACT, QUOTING)
    assert greedy(client, PROMPT_LOOKUP, QUOTING, num_assistant_tokens=8, max_ngram_size=2) == expected
    assert greedy(client, DRAFTED, QUOTING, num_assistant_tokens=1) == expected


def test_sampling_and_several_choices_work_with_speculation(client, speculative_models):
    answer = client.chat.completions.create(
        model=PROMPT_LOOKUP, messages=STORY, max_tokens=16, temperature=0.8, seed=3, n=2
    )
    assert len(answer.choices) == 2 and all(c.message.content for c in answer.choices)


@pytest.mark.parametrize(
    ("model", "extra", "param"),
    [
        (DEMO, {"num_assistant_tokens": 4}, "num_assistant_tokens"),
        (DEMO, {"max_ngram_size": 3}, "max_ngram_size"),
        (DRAFTED, {"max_ngram_size": 3}, "max_ngram_size"),
        (PROMPT_LOOKUP, {"num_assistant_tokens": 0}, "num_assistant_tokens"),
        (PROMPT_LOOKUP, {"max_ngram_size": 65}, "max_ngram_size"),
    ],
)
def test_settings_a_model_cannot_take_are_400(http, speculative_models, model, extra, param):
    body = {"model": model, "messages": STORY, "max_tokens": 4, **extra}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_text_completions_use_it_too(client, speculative_models):
    prompt = "The list: apples, pears, plums. The list again: apples,"
    kwargs = {"prompt": prompt, "max_tokens": 12, "temperature": 0}
    plain = client.completions.create(model=EXACT, **kwargs).choices[0].text
    assert client.completions.create(model=PROMPT_LOOKUP, **kwargs).choices[0].text == plain


@pytest.mark.parametrize("model", [PROMPT_LOOKUP, DRAFTED])
def test_accepted_guesses_are_counted_in_metrics(http, client, speculative_models, model):
    """``/metrics`` counts the steps and the accepted guesses, so the mean tokens a step can be read.
    Quoting the prompt is what prompt lookup guesses right, and a model drafting for itself guesses
    its own greedy tokens, so both accept guesses here."""

    def counts() -> tuple[float, float, float]:
        samples = parse(http.get("/metrics").text)
        names = ("generation_tokens", "speculative_steps", "speculative_accepted_tokens")
        return tuple(_present(samples, f"openarc_{name}_total", model) for name in names)

    before = counts()
    answer = client.chat.completions.create(model=model, messages=QUOTING, max_tokens=40, temperature=0)
    generated, steps, accepted = (b - a for a, b in zip(before, counts(), strict=True))
    assert generated == answer.usage.completion_tokens
    assert generated == steps + accepted  # every step gave one token of its own plus accepted guesses
    assert accepted > 0 and steps < generated


def test_a_model_without_speculation_counts_no_guesses(http, client):
    client.chat.completions.create(model=DEMO, messages=QUOTING, max_tokens=8, temperature=0)
    samples = parse(http.get("/metrics").text)
    assert _present(samples, "openarc_generation_tokens_total", DEMO) >= 8
    assert _present(samples, "openarc_speculative_steps_total", DEMO) == 0


def _present(samples: Samples, name: str, model: str) -> float:
    """The model's sample of ``name``, which must be there (a missing counter is not a zero)."""
    assert (name, frozenset({("model", model)})) in samples, f"no {name} for {model}"
    return value(samples, name, model=model)
