"""Workloads against a running server, through the streaming chat API, timed on the client side."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from adapters.export.timing import LevelResult, RequestTiming, percentile


async def stream_chat(
    client: httpx.AsyncClient,
    model: str,
    messages: list[dict],
    max_tokens: int,
    ignore_eos: bool = True,
    extra: dict | None = None,
) -> tuple[str, RequestTiming]:
    """One greedy streaming request (with ``ignore_eos`` unless told); returns the text and its timings.
    ``extra`` goes into the body as it is (a peer server's own way of not stopping early)."""
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": ignore_eos,
        "stream": True,
        "stream_options": {"include_usage": True},
        **(extra or {}),
    }
    start = time.perf_counter()
    token_times: list[float] = []
    text: list[str] = []
    usage: dict = {}
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk["choices"]:
                if choice["delta"].get("content"):
                    token_times.append(time.perf_counter() - start)
                    text.append(choice["delta"]["content"])
    timing = RequestTiming(
        ttft=token_times[0] if token_times else float("nan"),
        token_times=token_times,
        # A server that sends no usage when streaming (llama-cpp-python) sends a token a chunk.
        completion_tokens=usage.get("completion_tokens", len(token_times)),
        prompt_tokens=usage.get("prompt_tokens", 0),
        cached_tokens=usage.get("prompt_tokens_details", {}).get("cached_tokens", 0),
    )
    return "".join(text), timing


async def concurrency_level(
    base_url: str, model: str, prompts: list[str], max_tokens: int, extra: dict | None = None
) -> tuple[LevelResult, list[float]]:
    """Send every prompt at once; also ping /health during the run to see if the event loop stalls."""
    limits = httpx.Limits(max_connections=len(prompts) + 2)
    async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as client:
        done = asyncio.Event()
        pings: list[float] = []

        async def ping() -> None:
            while not done.is_set():
                start = time.perf_counter()
                await client.get("/health")
                pings.append(time.perf_counter() - start)
                await asyncio.sleep(0.05)

        pinger = asyncio.create_task(ping())
        start = time.perf_counter()
        results = await asyncio.gather(
            *(
                stream_chat(client, model, [{"role": "user", "content": p}], max_tokens, extra=extra)
                for p in prompts
            )
        )
        wall = time.perf_counter() - start
        done.set()
        await pinger
    return LevelResult(len(prompts), wall, [timing for _, timing in results]), pings


async def multi_turn(
    base_url: str, model: str, conversations: int, turns: int, max_tokens: int, extra: dict | None = None
) -> list[list[RequestTiming]]:
    """Round-robin chats: each turn of each conversation resends its whole history plus a new question.

    Returns, per turn, the timings of every conversation's request at that turn.
    """
    # Each question carries a paragraph of context, as agent tool results do, so the history grows fast.
    context = " ".join(f"Fact {i}: the archive lists item {i * 7} under shelf {i % 5}." for i in range(12))
    histories: list[list[dict]] = [
        [{"role": "system", "content": f"You are assistant number {c}. Answer in detail."}]
        for c in range(conversations)
    ]
    per_turn: list[list[RequestTiming]] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as client:
        for turn in range(turns):
            timings = []
            for history in histories:
                history.append(
                    {"role": "user", "content": f"{context} Question {turn + 1}: summarize topic {turn}."}
                )
                text, timing = await stream_chat(client, model, history, max_tokens, extra=extra)
                history.append({"role": "assistant", "content": text})
                timings.append(timing)
            per_turn.append(timings)
    return per_turn


async def repeated_prompt(base_url: str, model: str, repeat: int = 3) -> list[RequestTiming]:
    """One long, never-seen prompt sent several times: the first pays for prefill, the rest hit the cache."""
    facts = " ".join(f"Record {i}: crate {i * 11} is stored in hall {i % 9}." for i in range(150))
    messages = [{"role": "user", "content": f"Run {time.time_ns()}. {facts} Where is crate 22?"}]
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as client:
        return [(await stream_chat(client, model, messages, 8))[1] for _ in range(repeat)]


async def idle_pings(base_url: str, count: int = 20) -> list[float]:
    """/health latency with nothing else running: the baseline for the under-load pings."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        latencies = []
        for _ in range(count):
            start = time.perf_counter()
            await client.get("/health")
            latencies.append(time.perf_counter() - start)
    return latencies


def summarize_pings(pings: list[float]) -> str:
    """Ping latencies as one line: median, 95th percentile and maximum, in milliseconds."""
    p50, p95, top = (percentile(pings, q) * 1000 for q in (50, 95, 100))
    return f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {top:.1f} ms"
