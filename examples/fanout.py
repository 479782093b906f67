"""Many requests at once: an async fan-out with the openai SDK, measured the way a user feels it.

Sends N streamed chat requests through `AsyncOpenAI`, a bounded number in flight at a time, with a
progress bar, then prints the aggregate output tokens/s, and p50/p95 of latency and of time to first token
(TTFT). Streaming with `stream_options={"include_usage": True}` gives both: the first content chunk marks
TTFT, and the last chunk carries the token counts. OpenArc batches the requests in flight into the same
engine steps, so the aggregate rate grows with the concurrency while each answer's own rate falls a little.

Run the server first (./scripts/serve), then: python examples/fanout.py
Settings: OPENARC_BASE_URL, OPENARC_MODEL, OPENARC_EXAMPLE_COUNT (requests, 32),
OPENARC_EXAMPLE_CONCURRENCY (in flight at once, 16), OPENARC_EXAMPLE_MAX_TOKENS (per answer, 64).
"""

import asyncio
import math
import os
import time

from openai import AsyncOpenAI
from tqdm import tqdm  # a dependency of the openai SDK itself

base_url = os.environ.get("OPENARC_BASE_URL", "http://127.0.0.1:8000/v1")
model = os.environ.get("OPENARC_MODEL", "SmolLM2-135M-Instruct")
count = int(os.environ.get("OPENARC_EXAMPLE_COUNT", "32"))
# 16 is OpenArc's default max_num_seqs: more than the engine's batch would only wait in the server's
# queue, which counts into TTFT here, and past max_queue it answers 429.
concurrency = int(os.environ.get("OPENARC_EXAMPLE_CONCURRENCY", "16"))
max_tokens = int(os.environ.get("OPENARC_EXAMPLE_MAX_TOKENS", "64"))

TOPICS = ["the sea", "a city at night", "autumn leaves", "a lighthouse", "coffee", "a train journey"]


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile: the smallest value with at least p% of values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def one(
    client: AsyncOpenAI, number: int, limit: asyncio.Semaphore, bar: tqdm
) -> tuple[float, float, int]:
    """One streamed request: returns (TTFT, latency, output tokens)."""
    async with limit:
        started = time.perf_counter()
        first = None
        tokens = 0
        stream = await client.chat.completions.create(
            model=model,
            messages=[
                {"role": "user", "content": f"Write two sentences about {TOPICS[number % len(TOPICS)]}."}
            ],
            max_tokens=max_tokens,
            temperature=0.7,
            seed=number,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - started
            if chunk.usage:  # the last chunk, with no choices
                tokens = chunk.usage.completion_tokens
        latency = time.perf_counter() - started
    bar.update()
    return (first if first is not None else latency), latency, tokens


async def main() -> None:
    """Send `count` requests, `concurrency` at a time, and print throughput, latency and TTFT percentiles."""
    client = AsyncOpenAI(base_url=base_url, api_key="not-needed")
    limit = asyncio.Semaphore(concurrency)
    await client.models.list()  # the first request pays for setting up the SDK: not part of any TTFT
    started = time.perf_counter()
    with tqdm(total=count, desc=f"{count} requests, {concurrency} at a time", unit="req") as bar:
        results = await asyncio.gather(*(one(client, n, limit, bar) for n in range(count)))
    wall = time.perf_counter() - started
    ttfts, latencies, tokens = zip(*results, strict=True)
    print(f"requests: {count}, {concurrency} at a time, max_tokens {max_tokens}, in {wall:.2f} s")
    print(f"output: {sum(tokens)} tokens, {sum(tokens) / wall:.1f} tokens/s aggregate")
    print(f"latency: p50 {percentile(latencies, 50):.3f} s, p95 {percentile(latencies, 95):.3f} s")
    print(f"TTFT: p50 {percentile(ttfts, 50):.3f} s, p95 {percentile(ttfts, 95):.3f} s")


if __name__ == "__main__":
    asyncio.run(main())
