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


# Renders the tools and every turn's tool calls and tool results, so they show in the prompt's length.
# It renders a call's arguments whole: openvino-genai's template engine (minja) probes each template, and
# one whose output does not show the arguments it was given is taken as not supporting tool calls and
# gets them "polyfilled" (the calls written as JSON into the content, tool turns sent as user turns).
# Blocks are trimmed as in Hugging Face's Jinja settings: no newline after "{% endif %}".
TOOLS_TEMPLATE = (
    "{% if tools %}TOOLS:{% for t in tools %}{{ t.function.name }}({{ t.function.parameters | tojson }});"
    "{% endfor %}\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.content %}{{ m.content }}{% endif %}"
    "{% for c in m.tool_calls or [] %}[call {{ c.id }} {{ c.function.name }} "
    "{{ c.function.arguments | tojson }}]"
    "{% endfor %}{% if m.tool_call_id %}(answers {{ m.tool_call_id }}){% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TOOL_CHAT = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
]


def test_tool_calls_and_tools_reach_the_template(http, client, tokenizer, loaded):
    response = http.post(
        "/admin/models",
        headers=AUTH,
        json={"id": "tools-template", "source": "demo", "chat_template": TOOLS_TEMPLATE},
    )
    assert response.status_code == 200, response.text
    loaded.append("tools-template")
    answer = client.chat.completions.create(
        model="tools-template", messages=TOOL_CHAT, tools=[WEATHER_TOOL], max_tokens=4, temperature=0
    )
    expected = (
        'TOOLS:get_weather({"type": "object", "properties": {"city": {"type": "string"}}, '
        '"required": ["city"]});'
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        '<|im_start|>assistant\n[call call_1 get_weather {"city": "Paris"}]<|im_end|>\n'
        "<|im_start|>tool\nsunny, 21 C(answers call_1)<|im_end|>\n<|im_start|>assistant\n"
    )
    tokens = int(tokenizer.encode(expected, add_special_tokens=False).input_ids.get_shape()[-1])
    assert answer.usage.prompt_tokens == tokens
    without = client.chat.completions.create(model="tools-template", messages=TOOL_CHAT[:1], max_tokens=4)
    assert without.usage.prompt_tokens < tokens


def test_tool_call_arguments_that_are_not_json_reach_the_template_as_text(http):
    """A call cut off by max_tokens comes back in the history as the model wrote it: accepted."""
    chat = [TOOL_CHAT[0], {**TOOL_CHAT[1], "tool_calls": [{**TOOL_CHAT[1]["tool_calls"][0]}]}, TOOL_CHAT[2]]
    chat[1]["tool_calls"][0]["function"] = {"name": "get_weather", "arguments": "{city: Par"}
    request = {"model": "SmolLM2-135M-Instruct", "messages": chat, "max_tokens": 4}
    response = http.post("/v1/chat/completions", json=request)
    assert response.status_code == 200, response.text
    valid = http.post("/v1/chat/completions", json={**request, "messages": TOOL_CHAT})
    assert response.json()["usage"]["prompt_tokens"] != valid.json()["usage"]["prompt_tokens"]
