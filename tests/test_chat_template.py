"""A chat template per model in the config, inline or from a file, used for every request's prompt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openvino_genai
import pytest
from conftest import ADMIN_KEY

from gateway.config import ServerConfig
from gateway.sources import ensure_demo_model

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
# The demo model's own template adds a default system prompt when the chat has none; this one does not,
# and marks every turn, so the prompt it renders is known exactly.
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n[template test] {{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QUESTION = [{"role": "user", "content": "Say hi."}]


@pytest.fixture(scope="module")
def tokenizer() -> openvino_genai.Tokenizer:
    return openvino_genai.Tokenizer(str(ensure_demo_model(ServerConfig().cache_path)))


def expected_prompt_tokens(tokenizer: openvino_genai.Tokenizer) -> int:
    rendered = "<|im_start|>user\n[template test] Say hi.<|im_end|>\n<|im_start|>assistant\n"
    return int(tokenizer.encode(rendered, add_special_tokens=False).input_ids.get_shape()[-1])


@pytest.fixture(scope="module")
def template_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("templates") / "chat.jinja"
    path.write_text(TEMPLATE)
    return path


@pytest.fixture
def loaded(http: httpx.Client) -> Iterator[list[str]]:
    """Ids of models loaded by a test, unloaded after it."""
    ids: list[str] = []
    yield ids
    for model_id in ids:
        http.delete(f"/admin/models/{model_id}", headers=AUTH)


@pytest.mark.parametrize("form", ["inline", "file"])
def test_configured_template_renders_every_prompt(http, client, tokenizer, template_file, loaded, form):
    model_id = f"templated-{form}"
    chat_template = TEMPLATE if form == "inline" else str(template_file)
    response = http.post(
        "/admin/models",
        headers=AUTH,
        json={"id": model_id, "source": "demo", "chat_template": chat_template},
    )
    assert response.status_code == 200, response.text
    loaded.append(model_id)
    answer = client.chat.completions.create(model=model_id, messages=QUESTION, max_tokens=4, temperature=0)
    assert answer.usage.prompt_tokens == expected_prompt_tokens(tokenizer)
    default = client.chat.completions.create(
        model="SmolLM2-135M-Instruct", messages=QUESTION, max_tokens=4, temperature=0
    )
    assert default.usage.prompt_tokens != answer.usage.prompt_tokens, "the model's own template differs"


@pytest.mark.parametrize(
    ("chat_template", "reason"),
    [
        ("{% for m in messages %}{{ m.content ", "the configured chat_template does not render"),
        ("/nonexistent/chat.jinja", "cannot read chat_template file /nonexistent/chat.jinja"),
    ],
)
def test_broken_template_is_a_load_failure_with_its_reason(http, chat_template, reason):
    spec = {"id": "badly-templated", "source": "demo", "chat_template": chat_template}
    response = http.post("/admin/models", headers=AUTH, json=spec)
    assert response.status_code == 400, response.text
    assert reason in response.json()["error"]["message"]
    assert "badly-templated" not in [m["id"] for m in http.get("/admin/models", headers=AUTH).json()["data"]]
