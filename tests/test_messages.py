"""Anthropic's Messages API (``/v1/messages``) through the ``anthropic`` SDK and ``langchain-anthropic``.

The SDK no longer takes ``temperature`` as an argument (newer Claude models fix it); clients that still
send it, as LangChain does, reach OpenArc through ``extra_body`` here.
"""

from __future__ import annotations

import anthropic
import httpx
import jsonschema
import pytest
from conftest import DEMO
from test_agents import WEATHER_PARAMETERS

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": WEATHER_PARAMETERS,
}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def claude(server_root: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server_root, api_key="unused", max_retries=0, timeout=120)


def text_of(message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


@pytest.mark.parametrize("stream", [False, True])
def test_a_plain_answer(claude: anthropic.Anthropic, stream: bool):
    kwargs = {"model": DEMO, "max_tokens": 24, "messages": QUESTION, "extra_body": {"temperature": 0}}
    if stream:
        with claude.messages.stream(**kwargs) as events:
            kinds = [event.type for event in events]
            message = events.get_final_message()
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
        assert "content_block_start" in kinds and "content_block_stop" in kinds
    else:
        message = claude.messages.create(**kwargs)
    assert message.role == "assistant" and message.model == DEMO
    assert "Paris" in text_of(message)
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.output_tokens > 0
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) > 10


def test_streaming_and_not_give_the_same_greedy_text(claude: anthropic.Anthropic):
    story = [{"role": "user", "content": "Tell me a story."}]
    kwargs = {"model": DEMO, "max_tokens": 30, "messages": story, "extra_body": {"temperature": 0}}
    plain = claude.messages.create(**kwargs)
    with claude.messages.stream(**kwargs) as events:
        streamed = events.get_final_message()
    assert text_of(streamed) == text_of(plain)
    assert streamed.stop_reason == plain.stop_reason == "max_tokens"
    assert streamed.usage.output_tokens == plain.usage.output_tokens == 30


def test_stop_sequences_say_which_one_stopped(claude: anthropic.Anthropic):
    message = claude.messages.create(
        model=DEMO, max_tokens=40, messages=QUESTION, extra_body={"temperature": 0}, stop_sequences=["Paris"]
    )
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "Paris"
    assert "Paris" not in text_of(message)


def test_a_system_prompt_as_blocks_with_cache_control(claude: anthropic.Anthropic):
    """As Claude Code sends it: blocks with cache breakpoints (accepted; the prefix cache needs none)."""
    system = [{"type": "text", "text": "Answer in one word.", "cache_control": {"type": "ephemeral"}}]
    message = claude.messages.create(model=DEMO, max_tokens=8, system=system, messages=QUESTION)
    assert message.content and message.usage.output_tokens > 0


@pytest.mark.parametrize("stream", [False, True])
def test_forced_tool_use_round_trip(claude: anthropic.Anthropic, stream: bool):
    """``tool_choice`` ``tool``: a ``tool_use`` block whose input matches the schema, then a
    ``tool_result`` in the next turn, then an answer."""
    kwargs = {
        "model": DEMO,
        "max_tokens": 60,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "extra_body": {"temperature": 0},
    }
    if stream:
        with claude.messages.stream(**kwargs) as events:
            deltas = [e.delta.type for e in events if e.type == "content_block_delta"]
            first = events.get_final_message()
        assert "input_json_delta" in deltas
    else:
        first = claude.messages.create(**kwargs)
    assert first.stop_reason == "tool_use"
    (call,) = [block for block in first.content if block.type == "tool_use"]
    assert call.name == "get_weather" and call.id.startswith("toolu_")
    jsonschema.validate(call.input, WEATHER_PARAMETERS)
    answer = claude.messages.create(
        model=DEMO,
        max_tokens=30,
        tools=[WEATHER_TOOL],
        messages=[
            *kwargs["messages"],
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "21 degrees"}],
            },
        ],
    )
    assert text_of(answer) and answer.stop_reason in ("end_turn", "max_tokens")


def test_count_tokens_is_the_prompt_generation_reads(claude: anthropic.Anthropic):
    """The count equals the prompt tokens the same request then reports in its usage (cache included)."""
    counted = claude.messages.count_tokens(model=DEMO, messages=QUESTION, tools=[WEATHER_TOOL])
    message = claude.messages.create(model=DEMO, max_tokens=4, messages=QUESTION, tools=[WEATHER_TOOL])
    read = message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0)
    assert counted.input_tokens == read > 10


def test_max_tokens_is_a_cap_not_a_demand(claude: anthropic.Anthropic):
    """Claude Code sends max_tokens 32000 to any model: the 8,192-token model answers, it does not refuse."""
    message = claude.messages.create(
        model=DEMO, max_tokens=32000, messages=QUESTION, extra_body={"temperature": 0}
    )
    assert "Paris" in text_of(message)


def test_langchain_anthropic(server_root: str):
    from langchain_anthropic import ChatAnthropic

    chat = ChatAnthropic(
        model=DEMO,
        base_url=server_root,
        api_key="unused",
        max_tokens=24,
        extra_body={"temperature": 0},
        max_retries=0,
    )
    assert "Paris" in chat.invoke("What is the capital of France?").content
    tool_call = chat.bind_tools([WEATHER_TOOL], tool_choice="get_weather").invoke("Weather in Paris?")
    assert tool_call.tool_calls and tool_call.tool_calls[0]["name"] == "get_weather"


# --- bad input: Anthropic's error shape and status, and the server keeps serving --------------------------

BAD = [
    ({"model": DEMO, "messages": QUESTION}, 400, "max_tokens"),  # required, as Anthropic has it
    ({"model": DEMO, "max_tokens": "8", "messages": QUESTION}, 400, "max_tokens"),
    ({"model": DEMO, "max_tokens": 8, "messages": []}, 400, "messages"),
    (
        {"model": DEMO, "max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "video"}]}]},
        400,
        "video",
    ),
    (
        {
            "model": DEMO,
            "max_tokens": 8,
            "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}],
        },
        400,
        "image",
    ),
    ({"model": DEMO, "max_tokens": 8, "messages": QUESTION, "tools": [{"name": "x"}]}, 400, "input_schema"),
    (
        {
            "model": DEMO,
            "max_tokens": 8,
            "messages": QUESTION,
            "tools": [{"type": "web_search_20250305", "name": "w"}],
        },
        400,
        "web_search",
    ),
    ({"model": "no-such-model", "max_tokens": 8, "messages": QUESTION}, 404, "no-such-model"),
]


@pytest.mark.parametrize(("body", "status", "mentions"), BAD)
def test_bad_requests_get_anthropic_errors(http: httpx.Client, body: dict, status: int, mentions: str):
    response = http.post("/v1/messages", json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["type"] == "error" and set(error["error"]) == {"type", "message"}
    assert mentions in error["error"]["message"]
    expected = {400: "invalid_request_error", 404: "not_found_error"}[status]
    assert error["error"]["type"] == expected


def test_invalid_utf8_and_a_wrong_content_type(http: httpx.Client):
    broken = http.post(
        "/v1/messages", content=b'{"model": "\xff"}', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400 and broken.json()["type"] == "error"
    form = http.post(
        "/v1/messages", content=b"a=b", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert form.status_code == 415 and form.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("InvalidRequestError", "invalid_request_error"),
        ("AuthenticationError", "authentication_error"),
        ("OverloadedError", "rate_limit_error"),
        ("ServiceUnavailableError", "overloaded_error"),
        ("PayloadTooLargeError", "request_too_large"),
        ("RequestTimeoutError", "timeout_error"),
    ],
)
def test_errors_map_to_anthropics_types(error: str, kind: str):
    """Statuses Anthropic's clients retry on (429, 529/503) must keep their meaning in the error type."""
    import msgspec

    from gateway import errors
    from gateway.dialects.messages.errors import anthropic_error

    body = msgspec.to_builtins(anthropic_error(getattr(errors, error)("why")))
    assert body == {"type": "error", "error": {"type": kind, "message": "why"}}
