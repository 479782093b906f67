"""OpenAI's Responses API (``/v1/responses``) through the real ``openai`` SDK, LangChain and the Agents SDK.

Forced calls and JSON schemas hold whatever the 135M model would say (generation is constrained); calls
the model writes on its own use the tools-aware chat template (as in ``test_agents``).
"""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest
from conftest import ADMIN_KEY, DEMO
from test_agents import REASONING_MODEL, TOOLS_MODEL, WEATHER_PARAMETERS, extra_models  # noqa: F401

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": WEATHER_PARAMETERS,
}
QUESTION = "What is the capital of France?"


def final(stream) -> object:
    """The response a stream ends with (``response.completed`` or ``response.incomplete``)."""
    events = list(stream)
    assert events[-1].type in ("response.completed", "response.incomplete"), events[-1].type
    return events[-1].response


def text_of(response) -> str:
    return "".join(part.text for item in response.output if item.type == "message" for part in item.content)


@pytest.mark.parametrize("stream", [False, True])
def test_a_plain_answer(client: openai.OpenAI, stream: bool):
    kwargs = {"model": DEMO, "input": QUESTION, "temperature": 0, "max_output_tokens": 24}
    if not stream:
        response = client.responses.create(**kwargs)
    else:
        events = list(client.responses.create(stream=True, **kwargs))
        kinds = [event.type for event in events]
        assert kinds[:4] == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
        ]
        assert kinds[-4:] == [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
        assert [event.sequence_number for event in events] == list(range(len(events)))
        deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
        response = events[-1].response
        assert deltas == text_of(response)
    assert response.status == "completed" and response.model == DEMO
    assert "Paris" in text_of(response)
    assert response.usage.input_tokens > 10 and 0 < response.usage.output_tokens <= 24
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


def test_streaming_and_not_give_the_same_greedy_text(client: openai.OpenAI):
    kwargs = {"model": DEMO, "input": "Tell me a story.", "temperature": 0, "max_output_tokens": 30}
    plain = client.responses.create(**kwargs)
    streamed = final(client.responses.create(stream=True, **kwargs))
    assert text_of(streamed) == text_of(plain) and streamed.status == plain.status


def test_max_output_tokens_makes_an_incomplete_response(client: openai.OpenAI):
    response = client.responses.create(
        model=DEMO, input="Write a long story.", max_output_tokens=5, extra_body={"ignore_eos": True}
    )
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 5


@pytest.mark.parametrize("stream", [False, True])
def test_forced_function_call_round_trip(client: openai.OpenAI, stream: bool):
    """A call, its output sent back as a ``function_call_output`` item, then the final answer."""
    first_kwargs = {
        "model": DEMO,
        "input": "What is the weather in Paris?",
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "parallel_tool_calls": False,  # one call, then the call's end stops generation
        "temperature": 0,
    }
    if stream:
        events = list(client.responses.create(stream=True, **first_kwargs))
        kinds = [event.type for event in events]
        assert "response.function_call_arguments.delta" in kinds
        assert "response.function_call_arguments.done" in kinds
        first = events[-1].response
    else:
        first = client.responses.create(**first_kwargs)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) >= 1 and calls[0].name == "get_weather"
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER_PARAMETERS)
    follow_up = client.responses.create(
        model=DEMO,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"temp_c": 21}'}],
        tools=[WEATHER_TOOL],
        temperature=0,
        max_output_tokens=30,
    )
    assert follow_up.status in ("completed", "incomplete") and text_of(follow_up)


def test_a_whole_conversation_sent_back_without_a_store(client: openai.OpenAI):
    """The client keeps the items itself (``store: false``), as stateless agents do."""
    call_id = "call_abc123"
    items = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"type": "function_call", "call_id": call_id, "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": call_id, "output": "21 degrees and sunny"},
    ]
    response = client.responses.create(
        model=DEMO, input=items, tools=[WEATHER_TOOL], store=False, temperature=0, max_output_tokens=20
    )
    assert response.status in ("completed", "incomplete") and text_of(response) and response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_text_format_validates(client: openai.OpenAI, stream: bool):
    # Bounded strings: the 135M model would otherwise write one number or string until max tokens.
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            "country": {"type": "string", "maxLength": 20},
        },
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    kwargs = {
        "model": DEMO,
        "input": "Give me a city and its country as JSON.",
        "max_output_tokens": 80,
        "text": {"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
        "temperature": 0,
    }
    response = (
        final(client.responses.create(stream=True, **kwargs)) if stream else client.responses.create(**kwargs)
    )
    jsonschema.validate(json.loads(text_of(response)), schema)


def test_previous_response_id_continues_and_reuses_the_cache(client: openai.OpenAI):
    """Three turns, each sending only the new message: the conversation comes from the store, and the
    prefix cache serves what the turns before already computed."""
    turns = ["My name is Ada.", "What is my name?", "Say it once more."]
    previous = None
    cached = []
    for text in turns:
        response = client.responses.create(
            model=DEMO, input=text, previous_response_id=previous, temperature=0, max_output_tokens=16
        )
        cached.append(response.usage.input_tokens_details.cached_tokens)
        assert response.previous_response_id == previous
        previous = response.id
    assert cached[1] > 0 and cached[2] > cached[1], cached
    fetched = client.responses.retrieve(previous)
    assert fetched.id == previous and text_of(fetched) == text_of(response)
    items = client.responses.input_items.list(previous)
    assert [item.content[0].text for item in items.data] == [turns[-1]]


def test_input_items_come_a_page_at_a_time(client: openai.OpenAI, http: httpx.Client):
    """OpenAI's paging: newest first by default, ``limit`` and ``has_more``, ``after`` as the cursor the
    SDK's auto-pagination follows; an unknown cursor is a 400 naming it."""
    said = ["one", "two", "three"]
    response = client.responses.create(
        model=DEMO, input=[{"role": "user", "content": text} for text in said], max_output_tokens=2
    )
    newest_first = client.responses.input_items.list(response.id, limit=2)
    assert [item.content[0].text for item in newest_first.data] == ["three", "two"]
    assert newest_first.has_more
    every = [
        item.content[0].text for item in client.responses.input_items.list(response.id, limit=1, order="asc")
    ]
    assert every == said  # the SDK followed `after` until has_more was false
    unknown = http.get(f"/v1/responses/{response.id}/input_items", params={"after": "msg_nope"})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "after"
    too_many = http.get(f"/v1/responses/{response.id}/input_items", params={"limit": 101})
    assert too_many.status_code == 400 and too_many.json()["error"]["type"] == "invalid_request_error"


def test_delete_makes_it_unknown(client: openai.OpenAI):
    response = client.responses.create(model=DEMO, input="Hi", max_output_tokens=4)
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model=DEMO, input="Hi", previous_response_id=response.id, max_output_tokens=4)
    assert info.value.body["param"] == "previous_response_id"


@pytest.mark.usefixtures("extra_models")
def test_reasoning_becomes_a_reasoning_item_and_effort_low_turns_it_off(client: openai.OpenAI):
    kwargs = {"model": REASONING_MODEL, "input": "What is 2+2?", "temperature": 0, "max_output_tokens": 30}
    thinking = client.responses.create(**kwargs)
    assert thinking.output[0].type == "reasoning" and thinking.output[0].content[0].text
    quick = client.responses.create(reasoning={"effort": "low"}, **kwargs)
    assert [item.type for item in quick.output] == ["message"]


@pytest.mark.usefixtures("extra_models")
def test_the_model_calls_a_tool_on_its_own(client: openai.OpenAI):
    """``tool_choice`` auto on the tools-aware template, after a few-shot history of calls as items: the
    call the model writes is parsed into a ``function_call`` item (as in ``test_agents``)."""
    history = []
    for number, city in enumerate(("Rome", "Oslo")):
        arguments = json.dumps({"city": city, "unit": "celsius"})
        # Calls without their outputs: with outputs in the history, the 135M model imitates the output.
        history += [
            {"role": "user", "content": f"What is the weather in {city}?"},
            {
                "type": "function_call",
                "call_id": f"call_{number}",
                "name": "get_weather",
                "arguments": arguments,
            },
        ]
    response = client.responses.create(
        model=TOOLS_MODEL,
        instructions="Answer every weather question with a get_weather tool call.",
        input=[*history, {"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        temperature=0,
        max_output_tokens=60,
    )
    calls = [item for item in response.output if item.type == "function_call"]
    # The name is the model's own choice: auto parses, it does not constrain.
    assert calls and "weather" in calls[0].name and "Paris" in calls[0].arguments


# --- the agent frameworks on the Responses API ------------------------------------------------------------


def test_langchain_chat_openai_on_the_responses_api(base_url: str):
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        model=DEMO, base_url=base_url, api_key="unused", use_responses_api=True, temperature=0, max_tokens=60
    )
    assert "Paris" in chat.invoke(QUESTION).text
    forced = chat.bind_tools([WEATHER_TOOL], tool_choice="get_weather").invoke(
        "What is the weather in Paris?"
    )
    assert forced.tool_calls and forced.tool_calls[0]["name"] == "get_weather"
    jsonschema.validate(forced.tool_calls[0]["args"], WEATHER_PARAMETERS)


def test_llama_index_openai_responses_with_a_required_tool(base_url: str):
    """LlamaIndex's ``OpenAIResponses`` (its class for the Responses API): a plain chat, then
    ``chat_with_tools`` with the tool required, whose call it parses back into a tool selection."""
    from llama_index.core.llms import ChatMessage
    from llama_index.core.tools import FunctionTool
    from llama_index.llms.openai import OpenAIResponses

    def get_weather(city: str, unit: str = "celsius") -> str:
        """Current weather in a city."""
        return f"21 degrees {unit} in {city}"

    # context_window: the class looks up OpenAI's own model names otherwise, and ours is not one.
    llm = OpenAIResponses(
        model=DEMO, api_base=base_url, api_key="unused", temperature=0, max_output_tokens=60,
        context_window=8192,
    )  # fmt: skip
    assert "Paris" in llm.chat([ChatMessage(role="user", content=QUESTION)]).message.content
    tool = FunctionTool.from_defaults(fn=get_weather)
    response = llm.chat_with_tools([tool], user_msg="What is the weather in Paris?", tool_required=True)
    selections = llm.get_tool_calls_from_response(response, error_on_no_tool_call=True)
    assert selections[0].tool_name == "get_weather"
    assert isinstance(selections[0].tool_kwargs.get("city"), str)


@pytest.mark.usefixtures("extra_models")
def test_openai_agents_sdk_runs_a_tool_and_finishes(base_url: str):
    """``Runner.run`` on the SDK's default model class, which speaks the Responses API. The tool is forced
    on the first turn (``tool_choice`` required, reset after the call by the SDK), so the run must
    execute it, send its output back as a ``function_call_output`` item, and end with an answer."""
    import asyncio

    from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        calls.append(city)
        return f"It is 21 degrees in {city}."

    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    agent = Agent(
        name="weather",
        instructions="Answer weather questions with the get_weather tool.",
        tools=[get_weather],
        model=OpenAIResponsesModel(model=TOOLS_MODEL, openai_client=client),
        model_settings=ModelSettings(
            tool_choice="required", parallel_tool_calls=False, temperature=0, max_tokens=60
        ),
    )
    result = asyncio.run(Runner.run(agent, "What is the weather in Paris?", max_turns=4))
    assert len(calls) == 1 and isinstance(result.final_output, str) and result.final_output


# --- bad input: OpenAI's error shape, the right status, and the server keeps serving ----------------------

BAD = [
    ({"model": DEMO}, 400, "input"),
    ({"model": DEMO, "input": []}, 400, "input"),
    ({"model": DEMO, "input": 7}, 400, "input"),
    ({"model": DEMO, "input": [{"type": "item_reference", "id": "x"}]}, 400, "input[0].type"),
    ({"model": DEMO, "input": [{"role": "user", "content": 5}]}, 400, "input[0].content"),
    (
        {"model": DEMO, "input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]},
        400,
        "input[0].call_id",
    ),
    (
        {"model": DEMO, "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
        400,
        "input[0].content[0]",
    ),
    ({"model": DEMO, "input": "hi", "tools": [{"type": "file_search"}]}, 400, "tools[0].type"),
    ({"model": DEMO, "input": "hi", "tool_choice": "required"}, 400, "tool_choice"),
    ({"model": DEMO, "input": "hi", "background": True}, 400, "background"),
    ({"model": DEMO, "input": "hi", "max_output_tokens": 0}, 400, "max_output_tokens"),
    ({"model": DEMO, "input": "hi", "previous_response_id": "resp_unknown"}, 404, "previous_response_id"),
    ({"model": "no-such-model", "input": "hi"}, 404, "model"),
]


@pytest.mark.parametrize(("body", "status", "param"), BAD)
def test_bad_requests_get_openai_errors(http: httpx.Client, body: dict, status: int, param: str):
    response = http.post("/v1/responses", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param


def test_web_search_that_codex_always_sends_is_dropped(client: openai.OpenAI):
    response = client.responses.create(
        model=DEMO, input="Hi", max_output_tokens=4, tools=[{"type": "web_search"}, WEATHER_TOOL]
    )
    assert response.status in ("completed", "incomplete")


def test_the_output_goes_back_in_as_input(client: openai.OpenAI):
    """Stateless agents (Codex) send the previous output items back verbatim: they must be accepted."""
    first = client.responses.create(model=DEMO, input="Name a colour.", max_output_tokens=8, store=False)
    items = [item.model_dump(exclude_none=True) for item in first.output]
    conversation = [
        {"role": "user", "content": "Name a colour."},
        *items,
        {"role": "user", "content": "Another."},
    ]
    second = client.responses.create(model=DEMO, input=conversation, max_output_tokens=8, store=False)
    assert second.usage.input_tokens > first.usage.input_tokens


# --- the store survives a killed server -------------------------------------------------------------------


def _listening_pid(url: str) -> int:
    import psutil

    port = int(url.rsplit(":", 1)[1])
    return next(c.pid for c in psutil.net_connections("tcp") if c.laddr.port == port and c.status == "LISTEN")


def test_stored_responses_survive_a_kill_during_writes(tmp_path):
    """``kill -9`` of the server while responses are being made and stored: after a restart on the same
    store, every response the server had answered can be read back, and the file is intact."""
    import os
    import signal
    import sqlite3
    import threading

    from gateway.harness import running_server

    store = tmp_path / "responses.sqlite3"
    config = tmp_path / "openarc.toml"
    config.write_text(f'[responses]\npath = "{store}"\n\n[[models]]\nid = "{DEMO}"\nsource = "demo"\n')
    answered: list[str] = []
    with running_server(config, tmp_path / "first.log") as root:
        client = openai.OpenAI(base_url=f"{root}/v1", api_key="unused", max_retries=0, timeout=60)
        stop = threading.Event()

        def keep_asking() -> None:
            while not stop.is_set():
                try:
                    answered.append(client.responses.create(model=DEMO, input="Hi", max_output_tokens=2).id)
                except openai.APIError:
                    return  # the server is gone

        workers = [threading.Thread(target=keep_asking) for _ in range(4)]
        for worker in workers:
            worker.start()
        while len(answered) < 20:  # stores are being written when the kill comes
            threading.Event().wait(0.05)
        os.kill(_listening_pid(root), signal.SIGKILL)
        stop.set()
        for worker in workers:
            worker.join()
    assert sqlite3.connect(store).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with running_server(config, tmp_path / "second.log") as root:
        client = openai.OpenAI(base_url=f"{root}/v1", api_key="unused", max_retries=0)
        for response_id in answered:
            assert client.responses.retrieve(response_id).id == response_id
