"""Many requests at once: same answers as alone, disconnects free their slot, full queues answer 429."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest
from conftest import ADMIN_KEY, DEMO, EXACT, SEQUENTIAL, SMALL_QUEUE
from helpers import wait_for

from gateway.harness import parse, value

TOPICS = ["cats", "the moon", "a lighthouse", "bread", "rivers", "a robot", "winter", "chess"]
LONG = {"max_tokens": 400, "ignore_eos": True, "temperature": 0}


def generated_tokens(http: httpx.Client, model: str) -> float:
    """What the engine of ``model`` has generated since it started, as /metrics counts it."""
    return value(parse(http.get("/metrics").text), "openarc_generation_tokens_total", model=model)


async def test_concurrent_streams_match_sequential_answers(aclient):
    """What README "Inference precision" promises: computing exactly, a request's greedy answer does not
    depend on what else runs. With OpenVINO's dynamic quantization (the demo model's default) 7 of these 8
    answers differed on a Xeon with AMX, the first after 11 characters; without it, none did."""

    async def ask(topic: str) -> str:
        stream = await aclient.chat.completions.create(
            model=EXACT,
            messages=[{"role": "user", "content": f"Tell me a short story about {topic}."}],
            temperature=0,
            max_tokens=48,
            stream=True,
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    alone = [await ask(topic) for topic in TOPICS]
    together = await asyncio.gather(*(ask(topic) for topic in TOPICS))
    assert together == alone
    assert len(set(alone)) == len(TOPICS)


@pytest.mark.parametrize("model", [DEMO, SEQUENTIAL])
def test_disconnected_stream_frees_its_slot(http, activity, model):
    request = {
        "model": model,
        "messages": [{"role": "user", "content": "Count forever."}],
        "stream": True,
        **LONG,
    }
    with http.stream("POST", "/v1/chat/completions", json=request) as response:
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
        assert activity(model)["running"] == 1
    wait_for(
        lambda: activity(model) == {"id": model, "in_flight": 0, "running": 0}, what="the engine to go idle"
    )
    after = http.post("/v1/chat/completions", json={**request, "stream": False, "max_tokens": 5})
    assert after.status_code == 200 and after.json()["usage"]["completion_tokens"] == 5


def test_disconnected_non_streaming_request_is_cancelled(server_root, http, activity):
    """A client that gives up on a non-streamed answer (its socket closes) stops the generation. The
    client hangs up once the server reports the request running, so no speed can make it leave too
    early or too late."""
    request = {
        "model": DEMO,
        "messages": [{"role": "user", "content": "Count forever."}],
        **LONG,
        "max_tokens": 4000,
    }
    before = generated_tokens(http, DEMO)
    body = json.dumps(request).encode()
    host, port = httpx.URL(server_root).host, httpx.URL(server_root).port
    with socket.create_connection((host, port)) as impatient:
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        impatient.sendall(head.encode() + body)
        wait_for(lambda: activity(DEMO)["running"] == 1, what="the request to start")
    wait_for(lambda: activity(DEMO) == {"id": DEMO, "in_flight": 0, "running": 0}, 120, "cancellation")
    # Idle by cancellation, not because 4,000 tokens were made (how long they take depends on the CPU).
    assert generated_tokens(http, DEMO) - before < 4000


@pytest.mark.parametrize("model", [SMALL_QUEUE, SEQUENTIAL])
async def test_full_queue_answers_429_with_retry_after(server_root, http, activity, model):
    """Both models run 1 request and queue 1 more: a third concurrent request is refused at once, and
    the queued one is served once the running one ends."""
    request = {"model": model, "messages": [{"role": "user", "content": "Count."}], **LONG, "max_tokens": 30}
    # The running request lasts until the test leaves it, however fast the CPU: 8,000 tokens (two
    # 30-token requests can both finish before a test on a fast CPU looks at the queue).
    endless = {**request, "max_tokens": 8000, "stream": True}
    async with httpx.AsyncClient(base_url=server_root, timeout=120) as session:
        async with session.stream("POST", "/v1/chat/completions", json=endless) as running:
            # Keep the line iterator: a dropped one is closed when it is collected, and that closes
            # the stream, which cancels the request.
            lines = running.aiter_lines()
            await anext(lines)
            queued = asyncio.create_task(session.post("/v1/chat/completions", json=request))
            for _ in range(600):  # waits on the server's own count, bounded
                if activity(model)["in_flight"] == 2:
                    break
                await asyncio.sleep(0.05)
            assert activity(model)["in_flight"] == 2
            refused = http.post("/v1/chat/completions", json={**request, "stream": True})
            await lines.aclose()
        # Leaving the stream cancels its generation: the queued request runs.
        served = await queued
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "server_overloaded"
    assert served.status_code == 200 and served.json()["usage"]["completion_tokens"] == 30
    assert http.post("/v1/chat/completions", json={**request, "max_tokens": 3}).status_code == 200


@pytest.mark.parametrize("stream", [False, True])
def test_sequential_engine_answers_like_continuous_batching(client, stream):
    story = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]

    def answer(model: str, **kwargs) -> tuple[str, str, int]:
        if stream:
            chunks = list(
                client.chat.completions.create(
                    model=model,
                    messages=story,
                    temperature=0,
                    stream=True,
                    stream_options={"include_usage": True},
                    **kwargs,
                )
            )
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            reason = next(
                c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
            )
            return text, reason, chunks[-1].usage.completion_tokens
        response = client.chat.completions.create(model=model, messages=story, temperature=0, **kwargs)
        return (
            response.choices[0].message.content,
            response.choices[0].finish_reason,
            response.usage.completion_tokens,
        )

    # Both compute exactly (see conftest): one token a step on two engines gives the same greedy answer.
    continuous = answer(EXACT, max_tokens=40)
    assert answer(SEQUENTIAL, max_tokens=40) == continuous
    assert continuous[1:] == ("length", 40)
    stop = continuous[0].split()[4]
    text, reason, _ = answer(SEQUENTIAL, max_tokens=40, stop=[stop])
    assert (text, reason) == (continuous[0][: continuous[0].index(stop)], "stop")


TIMEOUT_MODEL = "smollm2-timeout"
TIMEOUT = 6
"""Seconds TIMEOUT_MODEL allows a request: at 5 tok/s a first token still comes well before."""


@pytest.fixture(scope="module")
def timeout_model(http):
    """A model of these tests' own with a short request_timeout: on a shared one (it was SMALL_QUEUE),
    the queue test's running request could itself time out on a slow machine and free the queue."""
    spec = {"id": TIMEOUT_MODEL, "source": "demo", "request_timeout": TIMEOUT, "scheduler": {"cache_size": 1}}
    response = http.post("/admin/models", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, json=spec)
    assert response.status_code == 200, response.text
    yield TIMEOUT_MODEL
    http.delete(f"/admin/models/{TIMEOUT_MODEL}", headers={"Authorization": f"Bearer {ADMIN_KEY}"})


@pytest.mark.parametrize("stream", [False, True])
def test_request_timeout_stops_generation(http, activity, timeout_model, stream):
    """TIMEOUT_MODEL allows TIMEOUT seconds per request; 8000 tokens take far longer."""
    request = {
        "model": timeout_model,
        "messages": [{"role": "user", "content": "Count."}],
        **LONG,
        "max_tokens": 8000,  # a minute at the fastest speed measured: only the timeout can end it
    }
    response = http.post("/v1/chat/completions", json={**request, "stream": stream})
    if stream:
        assert response.status_code == 200
        events = response.text.split("\n\n")
        assert events[-2:] == ["data: [DONE]", ""]
        assert '"code":"request_timeout"' in events[-3]
        assert '"content"' in events[1], "tokens were streamed before the timeout"
    else:
        assert response.status_code == 408
        assert response.json()["error"]["code"] == "request_timeout"
    wait_for(lambda: activity(timeout_model)["running"] == 0, what="the timed-out generation to stop")
