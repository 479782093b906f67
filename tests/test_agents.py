"""Agents on the demo model over real HTTP: tool calls (forced and parsed), structured outputs, reasoning.

The 135M demo model knows nothing of tools, which makes it a fair test of the guarantees: a forced call
(``tool_choice`` ``required`` or a named function) must come out valid whatever the model would say,
because generation is constrained to the call's syntax and the function's JSON schema. Parsing of
calls the model writes on its own (``auto``) is shown with a tools-aware chat template from the config
(``examples/chat_templates/chatml-tools.jinja``) and a few-shot history that makes the model call.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest
from conftest import ADMIN_KEY, DEMO, EXACT

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
TOOLS_MODEL = "smollm2-tools"
TOOLS_TEMPLATE = Path(__file__).parent.parent / "examples" / "chat_templates" / "chatml-tools.jinja"
REASONING_MODEL = "smollm2-reasoning"
# A template in DeepSeek-R1's manner: the generation prompt opens the think block, unless the client
# turns thinking off (then the block is opened and closed empty, as Qwen3's template does). Like
# gpt-oss's, it writes a given reasoning effort into a system turn.
REASONING_TEMPLATE = (
    "{% if reasoning_effort is defined %}<|im_start|>system\nReasoning: {{ reasoning_effort }}<|im_end|>\n"
    "{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n"
    "{% else %}<think>\n{% endif %}{% endif %}"
)

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": WEATHER_PARAMETERS,
    },
}
TIME_PARAMETERS = {
    "type": "object",
    "properties": {"timezone": {"type": "string", "maxLength": 20}},
    "required": ["timezone"],
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a timezone",
        "parameters": TIME_PARAMETERS,
    },
}
SCHEMAS = {"get_weather": WEATHER_PARAMETERS, "get_time": TIME_PARAMETERS}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def extra_models(http: httpx.Client) -> Iterator[None]:
    """The demo model again, once with the tools-aware template and once with a reasoning template."""
    specs = [
        {"id": TOOLS_MODEL, "source": "demo", "chat_template": str(TOOLS_TEMPLATE)},
        {"id": REASONING_MODEL, "source": "demo", "chat_template": REASONING_TEMPLATE},
    ]
    for spec in specs:
        response = http.post("/admin/models", headers=AUTH, json=spec)
        assert response.status_code == 200, response.text
    yield
    for spec in specs:
        http.delete(f"/admin/models/{spec['id']}", headers=AUTH)


def check_call(name: str, arguments: str, allowed: set[str]) -> dict:
    """A call is valid: a known function, arguments that are a JSON object matching its schema."""
    assert name in allowed
    parsed = json.loads(arguments)
    jsonschema.validate(parsed, SCHEMAS[name])
    return parsed


# --- forced tool calls ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_time"}}])
def test_forced_call_is_valid(client: openai.OpenAI, tool_choice):
    answer = client.chat.completions.create(
        model=DEMO,
        messages=QUESTION,
        tools=[WEATHER, TIME],
        tool_choice=tool_choice,
        parallel_tool_calls=False,
        max_tokens=120,
        temperature=0,
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    allowed = {"get_time"} if isinstance(tool_choice, dict) else {"get_weather", "get_time"}
    check_call(call.function.name, call.function.arguments, allowed)


def test_forced_call_streams_in_openai_shape(client: openai.OpenAI):
    stream = client.chat.completions.create(
        model=DEMO,
        messages=QUESTION,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=120,
        temperature=0,
        stream=True,
    )
    pieces = []
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            pieces += choice.delta.tool_calls or []
            assert not choice.delta.content
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    first, rest = pieces[0], pieces[1:]
    assert first.id.startswith("call_") and first.type == "function" and first.function.name == "get_weather"
    assert rest, "the arguments arrive in pieces"
    assert all(p.id is None and p.function.name is None and p.index == 0 for p in rest)
    arguments = (first.function.arguments or "") + "".join(p.function.arguments or "" for p in rest)
    check_call("get_weather", arguments, {"get_weather"})


def test_parallel_calls_each_valid(client: openai.OpenAI):
    """tool_choice=required with two tools and no limit on parallel calls: several calls in one answer,
    each parsed on its own, valid and with its own id. On EXACT (computing exactly, so the same on every
    CPU) the demo model writes calls until max_tokens, so there are always at least two; one cut off by
    max_tokens may be incomplete, every call before it is whole."""
    answer = client.chat.completions.create(
        model=EXACT,
        messages=[{"role": "user", "content": "Weather in Paris and the time in Tokyo?"}],
        tools=[WEATHER, TIME],
        tool_choice="required",
        max_tokens=150,
        temperature=0,
    )
    calls = answer.choices[0].message.tool_calls
    finish = answer.choices[0].finish_reason
    assert finish in ("tool_calls", "length")
    whole = calls[:-1] if finish == "length" else calls
    assert len(whole) >= 2, calls
    for call in whole:
        check_call(call.function.name, call.function.arguments, {"get_weather", "get_time"})
    assert len({call.id for call in calls}) == len(calls)


def test_openai_sdk_round_trip(client: openai.OpenAI):
    """Call, run the tool, send its result back, get a final answer: the loop every agent runs."""
    messages: list = list(QUESTION)
    first = client.chat.completions.create(
        model=DEMO,
        messages=messages,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=120,
        temperature=0,
    )
    call = first.choices[0].message.tool_calls[0]
    arguments = check_call(call.function.name, call.function.arguments, {"get_weather"})
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    result = f"18 degrees {arguments['unit']} and sunny in {arguments['city']}"
    messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    final = client.chat.completions.create(
        model=DEMO, messages=messages, tools=[WEATHER], tool_choice="none", max_tokens=30, temperature=0
    )
    assert final.choices[0].message.tool_calls is None
    assert final.choices[0].message.content
    assert final.choices[0].finish_reason in ("stop", "length")


def test_langchain_tool_round_trip(base_url: str):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return f"18 C and sunny in {city}"

    llm = ChatOpenAI(base_url=base_url, api_key="unused", model=DEMO, temperature=0, max_tokens=60)
    agent = llm.bind_tools([get_weather], tool_choice="get_weather")
    messages: list = [HumanMessage("What is the weather in Paris?")]
    reply = agent.invoke(messages)
    assert len(reply.tool_calls) == 1
    call = reply.tool_calls[0]
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
    messages += [reply, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    final = llm.bind_tools([get_weather]).invoke(messages)
    assert isinstance(final.content, str) and final.content
    streamed = None
    for chunk in agent.stream([HumanMessage("Weather in Rome?")]):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None and streamed.tool_calls[0]["name"] == "get_weather"
    assert isinstance(streamed.tool_calls[0]["args"]["city"], str)


# --- tool calls the model writes itself (auto) -----------------------------------------------------------


def _call(number: int, city: str) -> dict:
    arguments = json.dumps({"city": city, "unit": "celsius"})
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": f"call_{number}",
                "type": "function",
                "function": {"name": "get_weather", "arguments": arguments},
            }
        ],
    }


FEW_SHOT = [
    {"role": "system", "content": "Answer every weather question with a get_weather tool call."},
    {"role": "user", "content": "What is the weather in Rome?"},
    _call(1, "Rome"),
    {"role": "user", "content": "What is the weather in Oslo?"},
    _call(2, "Oslo"),
]


@pytest.mark.parametrize("stream", [False, True])
def test_auto_parses_calls_the_model_writes(client: openai.OpenAI, extra_models, stream):
    request = {
        "model": TOOLS_MODEL,
        "messages": [*FEW_SHOT, {"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [WEATHER],
        "max_tokens": 60,
        "temperature": 0,
    }
    if stream:
        chunks = list(client.chat.completions.create(**request, stream=True))
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        pieces = [p for c in chunks if c.choices for p in c.choices[0].delta.tool_calls or []]
        name = pieces[0].function.name
        arguments = "".join(p.function.arguments or "" for p in pieces)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    else:
        answer = client.chat.completions.create(**request)
        content = answer.choices[0].message.content or ""
        (call,) = answer.choices[0].message.tool_calls
        name, arguments = call.function.name, call.function.arguments
        finish = [answer.choices[0].finish_reason]
    assert content == ""
    assert "weather" in name  # the model's own choice of name: auto does not constrain it
    assert json.loads(arguments)["city"] == "Paris"
    assert finish == ["tool_calls"]


def test_auto_keeps_plain_answers_plain(client: openai.OpenAI, extra_models):
    answer = client.chat.completions.create(
        model=TOOLS_MODEL,
        messages=[*FEW_SHOT, {"role": "user", "content": "Tell me a joke about cats."}],
        tools=[WEATHER],
        max_tokens=30,
        temperature=0,
    )
    choice = answer.choices[0]
    assert choice.message.tool_calls is None
    assert choice.message.content and "<tool_call>" not in choice.message.content
    assert choice.finish_reason in ("stop", "length")


def test_tool_choice_errors(client: openai.OpenAI):
    with pytest.raises(openai.BadRequestError) as missing:
        client.chat.completions.create(
            model=DEMO,
            messages=QUESTION,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
    assert missing.value.body["param"] == "tool_choice"
    with pytest.raises(openai.BadRequestError) as no_tools:
        client.chat.completions.create(model=DEMO, messages=QUESTION, tool_choice="required")
    assert no_tools.value.body["param"] == "tool_choice"


# --- structured outputs ----------------------------------------------------------------------------------

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"type": "string", "enum": ["engineer", "artist", "doctor"]},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
            },
            "required": ["city", "zip"],
        },
        "skills": {
            "type": "array",
            "items": {"type": "string", "maxLength": 15},
            "minItems": 1,
            "maxItems": 3,
        },
    },
    "required": ["name", "age", "role", "address", "skills"],
}
PERSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
PERSON_PROMPT = [{"role": "user", "content": "Invent a person and describe them as JSON."}]


def test_json_schema_output_validates(client: openai.OpenAI):
    answer = client.chat.completions.create(
        model=DEMO, messages=PERSON_PROMPT, response_format=PERSON_FORMAT, max_tokens=300, temperature=0
    )
    assert answer.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(answer.choices[0].message.content), PERSON)


def test_json_schema_output_validates_streaming(client: openai.OpenAI):
    stream = client.chat.completions.create(
        model=DEMO,
        messages=PERSON_PROMPT,
        response_format=PERSON_FORMAT,
        max_tokens=300,
        temperature=0.7,
        seed=3,
        stream=True,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    jsonschema.validate(json.loads(text), PERSON)


def test_json_object_output_is_an_object(client: openai.OpenAI):
    answer = client.chat.completions.create(
        model=DEMO,
        # A question the demo model answers in a few tokens: asked for "a JSON object with a greeting" it
        # nests {"hero": {"hero": ... until max_tokens, which the grammar allows.
        messages=[
            {"role": "system", "content": "You answer in JSON."},
            {"role": "user", "content": 'What is the capital of France? Answer as {"capital": ...}.'},
        ],
        response_format={"type": "json_object"},
        max_tokens=100,
        temperature=0,
    )
    text = answer.choices[0].message.content
    assert answer.choices[0].finish_reason == "stop", text
    assert isinstance(json.loads(text), dict) and "capital" in json.loads(text), text


ANSWER = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 40}},
    "required": ["answer"],
}
ANSWER_FORMAT = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER}}


NICE = [{"role": "user", "content": "Say something nice."}]
PARIS = [*FEW_SHOT, {"role": "user", "content": "What is the weather in Paris?"}]


@pytest.mark.parametrize(
    ("model", "messages", "expected"),
    [
        (DEMO, QUESTION, "answer"),
        (DEMO, NICE, "answer"),
        (TOOLS_MODEL, PARIS, "call"),
    ],
)
def test_tools_with_response_format_answer_or_call(
    client: openai.OpenAI, extra_models, model, messages, expected
):
    """Agents with a typed final answer send both: the output is that JSON or one valid call. A model with
    no call syntax of its own (the demo model's template) can only answer; the tools-aware one calls when
    its few-shot history says to. Each case says which it must be. (Given the tools and no few-shot, the
    135M model calls even to "say something nice", so that case pins nothing worth pinning.)"""
    answer = client.chat.completions.create(
        model=model,
        messages=messages,
        tools=[WEATHER],
        response_format=ANSWER_FORMAT,
        max_tokens=100,
        temperature=0,
    )
    message, finish = answer.choices[0].message, answer.choices[0].finish_reason
    if expected == "call":
        assert finish == "tool_calls" and not message.content
        (call,) = message.tool_calls
        assert check_call(call.function.name, call.function.arguments, {"get_weather"})["city"] == "Paris"
    else:
        assert message.tool_calls is None and finish == "stop"
        jsonschema.validate(json.loads(message.content), ANSWER)


def test_langchain_structured_output(base_url: str):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=base_url, api_key="unused", model=DEMO, temperature=0, max_tokens=300)
    person = llm.with_structured_output(PERSON | {"title": "person"}, method="json_schema").invoke(
        "Invent a person."
    )
    jsonschema.validate(person, PERSON)


async def test_broken_schema_is_a_400_and_hurts_nobody(aclient: openai.AsyncOpenAI):
    async def bystander() -> str:
        stream = await aclient.chat.completions.create(
            model=DEMO,
            messages=[{"role": "user", "content": "Count to ten."}],
            max_tokens=40,
            temperature=0,
            stream=True,
        )
        return "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])

    running = asyncio.create_task(bystander())
    for schema in ({"type": "nonsense"}, {"type": "string", "pattern": "(unclosed"}):
        with pytest.raises(openai.BadRequestError) as error:
            await aclient.chat.completions.create(
                model=DEMO,
                messages=PERSON_PROMPT,
                response_format={"type": "json_schema", "json_schema": {"name": "bad", "schema": schema}},
                max_tokens=10,
            )
        assert error.value.body["param"] == "response_format"
    assert await running, "the stream running beside the bad requests completes"


def test_many_distinct_schemas(client: openai.OpenAI):
    """50 schemas never seen before, one after another: each is checked, compiled and enforced (the
    check's cache bound is tested in test_grammar_check.py). Greedy and with no penalty: with
    xgrammar's own schema converter the 135M model filled the free whitespace it allows with newlines
    until max_tokens in about one request of three; OpenArc's compact grammar leaves it no such room."""
    for number in range(50):
        schema = {
            "type": "object",
            "properties": {f"field_{number}": {"type": "integer", "minimum": 0, "maximum": 9}},
            "required": [f"field_{number}"],
        }
        answer = client.chat.completions.create(
            model=DEMO,
            messages=[{"role": "user", "content": "A number."}],
            response_format={"type": "json_schema", "json_schema": {"name": f"s{number}", "schema": schema}},
            max_tokens=30,
            temperature=0,
        )
        jsonschema.validate(json.loads(answer.choices[0].message.content), schema)


# --- reasoning ---------------------------------------------------------------------------------------------


def test_reasoning_goes_to_reasoning_content(client: openai.OpenAI, extra_models):
    answer = client.chat.completions.create(
        model=REASONING_MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=20, temperature=0
    )
    message = answer.choices[0].message
    assert message.model_extra["reasoning_content"], "the template opened the think block"
    assert not message.content
    stream = client.chat.completions.create(
        model=REASONING_MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=20,
        temperature=0,
        stream=True,
    )
    reasoning = "".join(
        (chunk.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
        for chunk in stream
        if chunk.choices
    )
    assert reasoning == message.model_extra["reasoning_content"]


def test_reasoning_effort_reaches_the_template(client: openai.OpenAI, http: httpx.Client, extra_models):
    """``reasoning_effort`` is a template variable too (gpt-oss's template reads it): the prompt the
    model read is the one ``/tokenize`` makes with that variable, and not the one without it."""
    messages = [{"role": "user", "content": "Hi"}]

    def tokenized(**kwargs) -> int:
        body = {"model": REASONING_MODEL, "messages": messages, "chat_template_kwargs": kwargs}
        return http.post("/tokenize", json=body).raise_for_status().json()["count"]

    answer = client.chat.completions.create(
        model=REASONING_MODEL, messages=messages, max_tokens=5, temperature=0, reasoning_effort="high"
    )
    assert answer.usage.prompt_tokens == tokenized(reasoning_effort="high") != tokenized()


def test_thinking_off_leaves_content(client: openai.OpenAI, extra_models):
    answer = client.chat.completions.create(
        model=REASONING_MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=20,
        temperature=0,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )
    assert answer.choices[0].message.content
    assert not (answer.choices[0].message.model_extra or {}).get("reasoning_content")


def test_model_without_reasoning_keeps_its_content(client: openai.OpenAI):
    answer = client.chat.completions.create(
        model=DEMO, messages=[{"role": "user", "content": "Hi"}], max_tokens=20, temperature=0
    )
    assert answer.choices[0].message.content
    assert "reasoning_content" not in (answer.choices[0].message.model_extra or {})


def test_chat_template_kwargs_allow_list(client: openai.OpenAI):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(
            model=DEMO,
            messages=[{"role": "user", "content": "Hi"}],
            extra_body={"chat_template_kwargs": {"messages": []}},
        )
    assert error.value.body["param"] == "chat_template_kwargs.messages"
