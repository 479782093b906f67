"""Chat completions and models through the official openai SDK, against the real server and model.

Every behaviour is checked in both modes (``stream`` parametrized), and the two modes are compared.
"""

from __future__ import annotations

import openai
import pytest
from conftest import DEMO, SEQUENTIAL

from adapters.openvino.spec import default_properties
from gateway.config import DEMO_SAMPLING, ModelSpec, SamplingDefaults, ServerConfig, with_defaults

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]


def run(client: openai.OpenAI, stream: bool, **kwargs) -> dict:
    """One chat completion in either mode, reduced to the same shape; checks chunk invariants on the way."""
    kwargs.setdefault("model", DEMO)
    if not stream:
        response = client.chat.completions.create(**kwargs)
        assert response.object == "chat.completion"
        assert response.id.startswith("chatcmpl-") and response.model == DEMO and response.created > 0
        return {
            "texts": [c.message.content for c in response.choices],
            "reasons": [c.finish_reason for c in response.choices],
            "usage": response.usage,
            "roles": [c.message.role for c in response.choices],
        }
    chunks = list(
        client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs)
    )
    assert len({c.id for c in chunks}) == 1, "every chunk carries the same id"
    assert all(c.object == "chat.completion.chunk" and c.model == DEMO for c in chunks)
    *content_chunks, usage_chunk = chunks
    assert usage_chunk.choices == [] and usage_chunk.usage is not None, "usage comes last, with no choices"
    assert all(c.usage is None for c in content_chunks)
    n = kwargs.get("n", 1)
    texts, reasons, roles = [""] * n, [None] * n, [None] * n
    for chunk in content_chunks:
        (choice,) = chunk.choices
        if roles[choice.index] is None:
            roles[choice.index] = choice.delta.role
        else:
            assert choice.delta.role is None, "only the first chunk of a choice carries the role"
        assert reasons[choice.index] is None, "nothing follows a choice's finish_reason"
        texts[choice.index] += choice.delta.content or ""
        reasons[choice.index] = choice.finish_reason
    return {"texts": texts, "reasons": reasons, "usage": usage_chunk.usage, "roles": roles}


def check_usage(usage, completion_tokens: int | None = None) -> None:
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if completion_tokens is not None:
        assert usage.completion_tokens == completion_tokens


@pytest.mark.parametrize("stream", [False, True])
def test_answers_a_question(client, stream):
    result = run(client, stream, messages=QUESTION, temperature=0, max_tokens=30)
    assert "Paris" in result["texts"][0]
    assert result["reasons"] == ["stop"]
    assert result["roles"] == ["assistant"]
    check_usage(result["usage"])


def test_streamed_text_equals_non_streamed_text(client):
    plain = run(client, False, messages=STORY, temperature=0, max_tokens=120)
    streamed = run(client, True, messages=STORY, temperature=0, max_tokens=120)
    assert streamed["texts"] == plain["texts"]
    assert len(plain["texts"][0]) > 100
    assert streamed["usage"].completion_tokens == plain["usage"].completion_tokens


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("limit_field", ["max_tokens", "max_completion_tokens"])
def test_token_limit_gives_length(client, stream, limit_field):
    result = run(client, stream, messages=STORY, temperature=0, **{limit_field: 7})
    assert result["reasons"] == ["length"]
    check_usage(result["usage"], completion_tokens=7)


@pytest.mark.parametrize("stream", [False, True])
def test_stop_cuts_the_text_and_is_not_included(client, stream):
    baseline = run(client, False, messages=STORY, temperature=0, max_tokens=80)["texts"][0]
    words = baseline.split()
    # A stop string that starts mid-word and spans a word boundary, so it cannot line up with tokens.
    stop = words[5][1:] + " " + words[6][:2]
    assert stop in baseline
    result = run(
        client, stream, messages=STORY, temperature=0, max_tokens=80, stop=[stop, "never-appears-xyz"]
    )
    assert result["texts"] == [baseline[: baseline.index(stop)]]
    assert result["reasons"] == ["stop"]
    single = run(client, stream, messages=STORY, temperature=0, max_tokens=80, stop=stop)
    assert single["texts"] == result["texts"]


@pytest.mark.parametrize("stream", [False, True])
def test_n_choices(client, stream):
    result = run(client, stream, messages=STORY, n=3, temperature=1.0, seed=7, max_tokens=12)
    assert len(result["texts"]) == 3 and all(result["texts"])
    assert result["reasons"] == ["length"] * 3
    assert result["roles"] == ["assistant"] * 3
    check_usage(result["usage"], completion_tokens=36)
    assert len(set(result["texts"])) > 1, "choices are sampled independently"


def test_seed_makes_sampling_reproducible(client):
    first = run(client, False, messages=STORY, temperature=1.0, seed=1234, max_tokens=30)
    again = run(client, True, messages=STORY, temperature=1.0, seed=1234, max_tokens=30)
    assert first["texts"] == again["texts"]


@pytest.mark.parametrize("stream", [False, True])
def test_extra_sampling_fields(client, stream):
    result = run(
        client,
        stream,
        messages=QUESTION,
        max_tokens=20,
        temperature=0.7,
        top_p=0.9,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        seed=3,
        extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1, "ignore_eos": True},
    )
    # ignore_eos really reaches the engine: the short answer cannot end before max_tokens.
    assert result["reasons"] == ["length"]
    check_usage(result["usage"], completion_tokens=20)


def test_model_sampling_defaults_fill_what_a_request_leaves_out(client):
    # SEQUENTIAL is configured with sampling.temperature 0: requests without a temperature are greedy.
    def answer(**kwargs) -> str:
        response = client.chat.completions.create(
            model=SEQUENTIAL,
            messages=[{"role": "user", "content": "Tell me a story."}],
            max_tokens=24,
            **kwargs,
        )
        return response.choices[0].message.content

    greedy = answer(temperature=0)
    assert answer() == answer() == greedy
    # A temperature in the request wins over the model's default.
    assert any(answer(temperature=1.5, seed=seed) != greedy for seed in (1, 2, 3))


def test_demo_model_gets_smollm2s_sampling_unless_configured():
    assert with_defaults(ServerConfig()).models[0].sampling == DEMO_SAMPLING
    own = ModelSpec(id="mine", source="demo", sampling=SamplingDefaults(temperature=0.7))
    assert with_defaults(ServerConfig(models=[own])).models[0].sampling.temperature == 0.7


def test_cpu_models_get_a_float16_kv_cache_and_f32_unless_configured():
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}
    assert default_properties("CPU", {}) == {"KV_CACHE_PRECISION": "f16", **f32}
    assert default_properties("CPU", {"KV_CACHE_PRECISION": "u8"}) == {"KV_CACHE_PRECISION": "u8", **f32}
    # Other devices keep their plugin's precision (f16 on GPU) unless the model asks for one.
    assert default_properties("GPU.1", {"NUM_STREAMS": 2}) == {"NUM_STREAMS": 2}
    assert default_properties("GPU", {}, inference_precision="f32") == f32
    assert default_properties("CPU", {}, inference_precision="bf16")["INFERENCE_PRECISION_HINT"] == "bf16"
    # A hint among the properties is the configured one: it wins over auto.
    assert (
        default_properties("CPU", {"INFERENCE_PRECISION_HINT": "bf16"})["INFERENCE_PRECISION_HINT"] == "bf16"
    )


def test_usage_is_not_streamed_unless_asked(client):
    chunks = list(client.chat.completions.create(model=DEMO, messages=QUESTION, temperature=0, stream=True))
    assert chunks and all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_every_role_and_content_parts(client):
    messages = [
        {"role": "system", "content": "You are a geography tutor."},
        {"role": "developer", "content": "Answer in one sentence."},
        {"role": "user", "content": [{"type": "text", "text": "Name a country in Europe."}]},
        {"role": "assistant", "content": "France."},
        {"role": "user", "content": "Its capital?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Paris"},
    ]
    response = client.chat.completions.create(model=DEMO, messages=messages, temperature=0, max_tokens=20)
    assert response.choices[0].message.content
    assert response.usage.prompt_tokens > 40, "every message reached the chat template"


def test_text_parts_equal_plain_string(client):
    parts = [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}]
    as_parts = run(client, False, messages=parts, temperature=0, max_tokens=20)
    as_string = run(client, False, messages=QUESTION, temperature=0, max_tokens=20)
    assert as_parts["texts"] == as_string["texts"]
    assert as_parts["usage"].prompt_tokens == as_string["usage"].prompt_tokens


def test_unknown_fields_are_ignored(client):
    response = client.chat.completions.create(
        model=DEMO,
        messages=QUESTION,
        temperature=0,
        max_tokens=10,
        extra_body={"guided_backend": "x", "some_vendor_field": [1, 2]},
    )
    assert response.choices[0].message.content


async def test_async_client_both_modes(aclient):
    response = await aclient.chat.completions.create(
        model=DEMO, messages=QUESTION, temperature=0, max_tokens=30
    )
    stream = await aclient.chat.completions.create(
        model=DEMO, messages=QUESTION, temperature=0, max_tokens=30, stream=True
    )
    streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert streamed == response.choices[0].message.content
    assert "Paris" in streamed


def test_models_list_and_retrieve(client):
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert DEMO in ids
    model = client.models.retrieve(DEMO)
    assert model.id == DEMO and model.object == "model" and model.owned_by == "openarc" and model.created > 0
    extra = model.model_extra
    assert extra["device"] == "CPU" and extra["context_length"] == 8192


def test_retrieve_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.body["code"] == "model_not_found"
