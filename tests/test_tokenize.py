"""``/tokenize`` and ``/detokenize`` (vLLM's shape), and model aliases, on the shared server."""

from __future__ import annotations

import httpx
import openai
import pytest
from conftest import DEMO, LISTED_ALIAS
from test_agents import WEATHER

CHAT = [{"role": "user", "content": "What is the capital of France?"}]


def test_a_chat_counts_what_generation_reads(http: httpx.Client, client: openai.OpenAI):
    """The count of a chat (tools included) is the prompt_tokens the same chat reports when answered."""
    counted = http.post("/tokenize", json={"model": DEMO, "messages": CHAT, "tools": [WEATHER]}).json()
    answer = client.chat.completions.create(model=DEMO, messages=CHAT, tools=[WEATHER], max_tokens=2)
    assert counted["count"] == len(counted["tokens"]) == answer.usage.prompt_tokens
    assert counted["max_model_len"] == 8192 and counted["token_strs"] is None
    without_tools = http.post("/v1/tokenize", json={"model": DEMO, "messages": CHAT}).json()
    assert without_tools["count"] < counted["count"], "the tools are in the template's prompt"


def test_a_prompt_round_trips_through_detokenize(http: httpx.Client):
    text = "The lighthouse keeper lit the lamp at dusk."
    tokens = http.post("/tokenize", json={"model": DEMO, "prompt": text}).json()["tokens"]
    assert 5 < len(tokens) < 20
    assert http.post("/detokenize", json={"model": DEMO, "tokens": tokens}).json() == {"prompt": text}


def test_a_prompt_longer_than_the_context_says_about_how_long(http: httpx.Client):
    """The GGUF's tokenizer cuts every encoding at the context length, so the whole list cannot be given:
    a 400 with the count made in pieces, as a generation gets."""
    response = http.post("/tokenize", json={"model": DEMO, "prompt": "word " * 9000})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and "about 9" in error["message"]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": DEMO}, 400, "prompt"),
        ({"model": DEMO, "prompt": "a", "messages": CHAT}, 400, "prompt"),
        ({"model": DEMO, "prompt": "a", "return_token_strs": True}, 400, "return_token_strs"),
        ({"model": DEMO, "prompt": 3}, 400, "prompt"),
        ({"model": "no-such-model", "prompt": "a"}, 404, "model"),
    ],
)
def test_bad_tokenize_requests(http: httpx.Client, body: dict, status: int, param: str):
    response = http.post("/tokenize", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


def test_detokenize_refuses_what_is_not_a_token(http: httpx.Client):
    response = http.post("/detokenize", json={"model": DEMO, "tokens": [-1]})
    assert response.status_code == 400 and response.json()["error"]["param"] == "tokens[0]"


# --- aliases -----------------------------------------------------------------------------------------


def test_an_alias_reaches_its_model_and_only_listed_ones_are_listed(client: openai.OpenAI):
    ids = [model.id for model in client.models.list().data]
    assert LISTED_ALIAS in ids and not any(i.startswith("claude-") for i in ids)
    for name in (LISTED_ALIAS, "claude-sonnet-4-5-20250929", "claude-haiku-4-5"):
        answer = client.chat.completions.create(model=name, messages=CHAT, max_tokens=8, temperature=0)
        assert answer.model == DEMO and "Paris" in answer.choices[0].message.content
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=CHAT, max_tokens=2)


def test_an_alias_to_a_model_that_is_not_configured_stops_start_up(tmp_path):
    import subprocess
    import sys

    from helpers import ROOT

    config = tmp_path / "openarc.toml"
    config.write_text('models_dirs = []\n[[aliases]]\nname = "gpt-4o"\nmodel = "nowhere"\n')
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "openarc: error: alias 'gpt-4o' names the model 'nowhere', which is neither configured nor in a "
        "model folder"
    ]
