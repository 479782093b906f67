"""Many requests at once: same answers as alone, disconnects free their slot, full queues answer 429."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from conftest import DEMO, SEQUENTIAL, SMALL_QUEUE

TOPICS = ["cats", "the moon", "a lighthouse", "bread", "rivers", "a robot", "winter", "chess"]
LONG = {"max_tokens": 400, "ignore_eos": True, "temperature": 0}


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll until ``predicate()`` holds; this bounds a wait, it does not assert on speed."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


async def test_concurrent_streams_match_sequential_answers(aclient):
    async def ask(topic: str) -> str:
        stream = await aclient.chat.completions.create(
            model=DEMO,
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
    request = {
        "model": DEMO,
        "messages": [{"role": "user", "content": "Count forever."}],
        **LONG,
        "max_tokens": 4000,
    }

    def impatient_client() -> None:
        try:
            httpx.post(f"{server_root}/v1/chat/completions", json=request, timeout=1.5)
        except httpx.TimeoutException:
            pass

    thread = threading.Thread(target=impatient_client)
    thread.start()
    wait_for(lambda: activity(DEMO)["running"] == 1, what="the request to start")
    thread.join()
    # 4000 tokens take far longer than this wait: only cancellation can bring the engine back to idle.
    wait_for(lambda: activity(DEMO) == {"id": DEMO, "in_flight": 0, "running": 0}, what="cancellation")


@pytest.mark.parametrize("model", [SMALL_QUEUE, SEQUENTIAL])
def test_full_queue_answers_429_with_retry_after(server_root, http, activity, model):
    """Both models run 1 request and queue 1 more: a third concurrent request is refused at once."""
    request = {"model": model, "messages": [{"role": "user", "content": "Count."}], **LONG, "max_tokens": 30}
    results: list[httpx.Response] = []

    def occupant() -> None:
        results.append(httpx.post(f"{server_root}/v1/chat/completions", json=request, timeout=120))

    occupants = [threading.Thread(target=occupant) for _ in range(2)]
    for thread in occupants:
        thread.start()
    wait_for(lambda: activity(model)["in_flight"] == 2, what="two requests in flight")
    refused = http.post("/v1/chat/completions", json={**request, "stream": True})
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "server_overloaded"
    for thread in occupants:
        thread.join()
    assert [r.status_code for r in results] == [200, 200]
    assert all(r.json()["usage"]["completion_tokens"] == 30 for r in results)
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

    continuous = answer(DEMO, max_tokens=40)
    assert answer(SEQUENTIAL, max_tokens=40) == continuous
    assert continuous[1:] == ("length", 40)
    stop = continuous[0].split()[4]
    text, reason, _ = answer(SEQUENTIAL, max_tokens=40, stop=[stop])
    assert (text, reason) == (continuous[0][: continuous[0].index(stop)], "stop")


@pytest.mark.parametrize("stream", [False, True])
def test_request_timeout_stops_generation(http, activity, stream):
    """SMALL_QUEUE allows SMALL_QUEUE_TIMEOUT seconds per request; 3000 tokens take far longer."""
    request = {
        "model": SMALL_QUEUE,
        "messages": [{"role": "user", "content": "Count."}],
        **LONG,
        "max_tokens": 3000,
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
    wait_for(lambda: activity(SMALL_QUEUE)["running"] == 0, what="the timed-out generation to stop")
