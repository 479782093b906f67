"""``python -m bench.huge_prompt``: do huge prompts stall the streams already running?

Starts a real server with the demo model (or uses ``--base-url``), runs 8 streams, and while they run
sends huge requests (20,000 messages, then one 1 MB message; both over the context window, so each
costs templating and tokenizing and ends in a 400). It reports the streams' inter-token gaps while the
huge requests were being handled against the gaps of the same streams before and after, the figure
issue 7 asks for.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

import httpx

from adapters.export.timing import percentile
from gateway.config import ModelSpec
from gateway.harness import serving

from .http_load import stream_chat

MODEL_ID = "bench"
HUGE_REQUESTS = {
    "20k messages": [
        {"role": "user" if i % 2 == 0 else "assistant", "content": "word"} for i in range(20_000)
    ],
    "1 MB message": [{"role": "user", "content": "lorem ipsum " * 87_382}],
}


async def measure(base_url: str, model: str, streams: int, max_tokens: int, rounds: int) -> str:
    """Run the workload and return a short report."""
    limits = httpx.Limits(max_connections=streams + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as client:
        await stream_chat(client, model, [{"role": "user", "content": "Hello"}], 4)
        windows: list[tuple[str, float, float, int]] = []

        async def huge() -> None:
            await asyncio.sleep(2.0)  # let every stream reach its decode phase
            for _ in range(rounds):
                for name, messages in HUGE_REQUESTS.items():
                    start = time.perf_counter()
                    response = await client.post(
                        "/v1/chat/completions", json={"model": model, "messages": messages}
                    )
                    windows.append((name, start, time.perf_counter(), response.status_code))
                    await asyncio.sleep(0.5)

        origin = time.perf_counter()
        prompts = [f"Write a long story about island {i}." for i in range(streams)]
        results = await asyncio.gather(
            *(stream_chat(client, model, [{"role": "user", "content": p}], max_tokens) for p in prompts),
            huge(),
        )
    during: list[float] = []
    outside: list[float] = []
    for _, timing in results[:streams]:
        times = [origin + t for t in timing.token_times]
        for before, after in zip(times, times[1:], strict=False):
            hit = any(start <= after and before <= end for _, start, end, _ in windows)
            (during if hit else outside).append(after - before)
    lines = [f"{streams} streams x {max_tokens} tokens; huge requests sent: {len(windows)}"]
    for name, start, end, status in windows:
        lines.append(f"  {name}: answered {status} in {(end - start) * 1000:.0f} ms")
    for label, gaps in (("outside the huge requests", outside), ("overlapping a huge request", during)):
        if gaps:
            p50, p95, top = (percentile(gaps, q) * 1000 for q in (50, 95, 100))
            lines.append(f"inter-token gap {label}: p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {top:.0f} ms")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure against ``--base-url``, or a server started with the demo model, and print the report."""
    parser = argparse.ArgumentParser(prog="python -m bench.huge_prompt", description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="a running server (root URL) instead of starting one")
    parser.add_argument("--model-id", default=MODEL_ID)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.base_url:
        report = asyncio.run(
            measure(args.base_url, args.model_id, args.streams, args.max_tokens, args.rounds)
        )
    else:
        with serving([ModelSpec(id=MODEL_ID, source="demo")]) as url:
            report = asyncio.run(measure(url, MODEL_ID, args.streams, args.max_tokens, args.rounds))
    sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
