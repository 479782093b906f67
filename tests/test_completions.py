"""``/v1/completions`` and ``logprobs`` through real clients, on the demo model."""

from __future__ import annotations

import math

import httpx
import numpy as np
import openai
import pytest
from conftest import DEMO, EXACT, SEQUENTIAL

PROMPT = "The capital of France is"


def test_completion(client: openai.OpenAI):
    answer = client.completions.create(model=DEMO, prompt=PROMPT, max_tokens=8, temperature=0)
    assert answer.object == "text_completion" and answer.id.startswith("cmpl-")
    (choice,) = answer.choices
    assert choice.text and choice.index == 0
    assert choice.finish_reason in ("stop", "length")
    assert answer.usage.completion_tokens <= 8
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_completion_default_max_tokens_is_16(client: openai.OpenAI):
    answer = client.completions.create(
        model=DEMO, prompt="Once upon a time", temperature=0, extra_body={"ignore_eos": True}
    )
    assert answer.usage.completion_tokens == 16
    assert answer.choices[0].finish_reason == "length"


def test_streaming_equals_non_streaming(client: openai.OpenAI):
    whole = client.completions.create(model=DEMO, prompt=PROMPT, max_tokens=12, temperature=0)
    stream = client.completions.create(
        model=DEMO,
        prompt=PROMPT,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(chunk.object == "text_completion" for chunk in chunks)
    text = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
    assert text == whole.choices[0].text
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    reasons = [
        chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason
    ]
    assert reasons == [whole.choices[0].finish_reason]


def test_n_choices_are_sampled_independently(client: openai.OpenAI):
    """n=2 with sampling on: each choice has its own random stream (seed + index), so the two differ,
    and each is what a single request with that choice's seed gives."""
    sampled = {"model": DEMO, "prompt": PROMPT, "max_tokens": 24, "temperature": 1.0, "seed": 11}
    answer = client.completions.create(n=2, **sampled)
    first, second = (choice.text for choice in answer.choices)
    assert first != second
    assert client.completions.create(**sampled).choices[0].text == first
    assert client.completions.create(**{**sampled, "seed": 12}).choices[0].text == second


def test_streamed_echo_with_logprobs_matches_the_whole_answer(client: openai.OpenAI):
    """echo streamed: the prompt comes first, then the generated text with its logprobs, exactly as the
    non-streamed answer has them."""
    request = {
        "model": DEMO,
        "prompt": PROMPT,
        "max_tokens": 8,
        "temperature": 0,
        "echo": True,
        "logprobs": 0,
    }
    whole = client.completions.create(**request).choices[0]
    chunks = [c.choices[0] for c in client.completions.create(stream=True, **request) if c.choices]
    assert chunks[0].text == PROMPT
    assert "".join(chunk.text for chunk in chunks) == whole.text
    streamed_tokens = [token for chunk in chunks if chunk.logprobs for token in chunk.logprobs.tokens]
    streamed_logprobs = [lp for chunk in chunks if chunk.logprobs for lp in chunk.logprobs.token_logprobs]
    assert streamed_tokens == whole.logprobs.tokens
    assert streamed_logprobs == pytest.approx(whole.logprobs.token_logprobs)
    assert len(whole.logprobs.tokens) == 8 and all(lp <= 0 for lp in whole.logprobs.token_logprobs)


def test_list_of_prompts_with_n_and_echo(client: openai.OpenAI):
    prompts = [PROMPT, "1, 2, 3,"]
    answer = client.completions.create(
        model=DEMO, prompt=prompts, n=2, max_tokens=5, temperature=0, echo=True
    )
    assert [choice.index for choice in answer.choices] == [0, 1, 2, 3]
    for choice in answer.choices:
        assert choice.text.startswith(prompts[choice.index // 2])
        assert len(choice.text) > len(prompts[choice.index // 2])
    single = [client.completions.create(model=DEMO, prompt=p, max_tokens=5, temperature=0) for p in prompts]
    assert answer.usage.prompt_tokens == sum(
        s.usage.prompt_tokens for s in single
    )  # once a prompt, not per choice


def test_list_of_prompts_streams_every_choice(client: openai.OpenAI):
    stream = client.completions.create(
        model=DEMO, prompt=[PROMPT, "1, 2, 3,"], max_tokens=5, temperature=0, stream=True
    )
    texts: dict[int, str] = {}
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
    assert sorted(texts) == [0, 1] and all(texts.values())


def test_stop_sequence(client: openai.OpenAI):
    answer = client.completions.create(
        model=DEMO, prompt="1, 2, 3,", max_tokens=20, temperature=0, stop=["5"]
    )
    assert "5" not in answer.choices[0].text
    assert answer.choices[0].finish_reason == "stop"


def test_langchain_openai_llm(base_url: str):
    from langchain_openai import OpenAI

    llm = OpenAI(base_url=base_url, api_key="unused", model=DEMO, temperature=0, max_tokens=8)
    text = llm.invoke(PROMPT)
    assert isinstance(text, str) and text
    assert "".join(llm.stream(PROMPT)) == text


def test_completion_logprobs(client: openai.OpenAI):
    answer = client.completions.create(
        model=DEMO, prompt=PROMPT, max_tokens=6, temperature=0, logprobs=0, echo=True
    )
    choice = answer.choices[0]
    logprobs = choice.logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == answer.usage.completion_tokens
    assert all(value <= 0 for value in logprobs.token_logprobs)
    assert logprobs.text_offset[0] == len(PROMPT)
    assert "".join(logprobs.tokens) == choice.text[len(PROMPT) :]


@pytest.mark.parametrize("stream", [False, True])
def test_chat_logprobs(client: openai.OpenAI, stream: bool):
    request = {
        "model": DEMO,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 8,
        "temperature": 0,
        "logprobs": True,
    }
    if stream:
        chunks = [c for c in client.chat.completions.create(**request, stream=True) if c.choices]
        content = [item for c in chunks if c.choices[0].logprobs for item in c.choices[0].logprobs.content]
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
    else:
        answer = client.chat.completions.create(**request)
        content = answer.choices[0].logprobs.content
        text = answer.choices[0].message.content
        assert len(content) == answer.usage.completion_tokens
    assert content and all(item.logprob <= 0 and item.top_logprobs == [] for item in content)
    assert text and "".join(item.token for item in content).startswith(text)
    # Greedy: the chosen token is the most likely, so its probability is high on a simple answer.
    assert max(math.exp(item.logprob) for item in content) > 0.5


def test_refused_parameters(client: openai.OpenAI, http: httpx.Client):
    with pytest.raises(openai.BadRequestError) as top:
        client.chat.completions.create(
            model=DEMO, messages=[{"role": "user", "content": "hi"}], logprobs=True, top_logprobs=2
        )
    assert top.value.body["param"] == "top_logprobs" and top.value.body["code"] == "unsupported_parameter"
    chat = {"model": DEMO, "messages": [{"role": "user", "content": "hi"}]}
    refused = {"logit_bias": {"50256": -100}, "functions": [{"name": "f"}], "modalities": ["text", "audio"]}
    for field, value in refused.items():
        response = http.post("/v1/chat/completions", json={**chat, field: value})
        assert response.status_code == 400, (field, response.text)
        assert response.json()["error"]["param"] == field
    ignored = {
        "service_tier": "auto",
        "reasoning_effort": "low",
        "prediction": {"type": "content", "content": "x"},
    }
    assert http.post("/v1/chat/completions", json={**chat, **ignored, "max_tokens": 2}).status_code == 200
    for field, value in (("suffix", "end"), ("logprobs", 2), ("best_of", 3)):
        response = http.post("/v1/completions", json={"model": DEMO, "prompt": "x", field: value})
        assert response.status_code == 400, (field, response.text)
        assert response.json()["error"]["param"] == field
    for body in (
        {"model": DEMO, "prompt": []},
        {"model": DEMO, "prompt": "x", "max_tokens": 0},
        {"model": DEMO},
    ):
        assert http.post("/v1/completions", json=body).status_code == 400
    response = http.post("/v1/completions", json={"model": "nope", "prompt": "x"})
    assert response.status_code == 404


def test_logprobs_on_the_sequential_engine_is_a_400(client: openai.OpenAI):
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=SEQUENTIAL, prompt=PROMPT, max_tokens=4, logprobs=0)


def test_logprobs_equal_a_teacher_forced_computation(client: openai.OpenAI, http: httpx.Client):
    """The logprobs the engine reports for its greedy tokens, against the same weights run outside it: the
    demo model's IR (the server's own GGUF conversion) through the OpenVINO runtime, one forward pass over
    prompt + answer, in f32 without dynamic quantization, as the EXACT model computes."""
    from adapters.export.quality import TeacherForcedModel
    from adapters.openvino.gguf_conversion import ensure_converted
    from gateway.config import ServerConfig
    from gateway.sources import ensure_demo_model

    answer = client.completions.create(model=EXACT, prompt=PROMPT, max_tokens=8, temperature=0, logprobs=0)
    choice = answer.choices[0]
    prompt_ids = http.post("/tokenize", json={"model": EXACT, "prompt": PROMPT}).json()["tokens"]
    whole_ids = http.post("/tokenize", json={"model": EXACT, "prompt": PROMPT + choice.text}).json()["tokens"]
    assert whole_ids[: len(prompt_ids)] == prompt_ids and len(whole_ids) == len(prompt_ids) + 8
    cache = ServerConfig().cache_path
    ir = ensure_converted(ensure_demo_model(cache), cache / "converted")
    model = TeacherForcedModel(ir, precision="f32", properties={"DYNAMIC_QUANTIZATION_GROUP_SIZE": 0})
    rows = model.log_probs(np.asarray(whole_ids), len(prompt_ids))
    expected = rows[np.arange(8), whole_ids[len(prompt_ids) :]]
    assert np.all(rows.argmax(axis=1) == whole_ids[len(prompt_ids) :]), "greedy tokens are the argmax"
    np.testing.assert_allclose(choice.logprobs.token_logprobs, expected, atol=2e-3)
