"""``python -m bench`` (or ``openarc bench``): OpenArc over HTTP vs the raw pipeline, measured in one run.

Starts a real server on a free loopback port (or uses ``--base-url``), runs a concurrency sweep and a
multi-turn round-robin workload through the streaming API, stops the server, then runs the same sweep
on the raw ContinuousBatchingPipeline in this process, and prints one report with the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path

import httpx
import msgspec

from adapters.export.timing import LevelResult, median_run
from adapters.openvino.spec import default_properties
from gateway.config import ModelSpec, SchedulerSettings, ServerConfig
from gateway.harness import serving
from gateway.sources import resolve_source

from .http_load import concurrency_level, idle_pings, multi_turn, repeated_prompt, stream_chat
from .memory import cpu_seconds, process_rss_mb, server_memory
from .report import BenchRun, PeerRun, render

logger = logging.getLogger("bench")
TOPICS = [
    "a lighthouse keeper",
    "a lost robot",
    "the first bakery on Mars",
    "a chess prodigy",
    "a river spirit",
    "an old clockmaker",
    "a city of glass",
    "a dragon who hates gold",
    "a desert caravan",
    "a deep-sea diver",
    "a forgotten library",
    "a winter festival",
    "a talking cat",
    "a mountain railway",
    "a pirate cook",
    "a garden on the moon",
]
MODEL_ID = "bench"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (over HTTP, then on the raw pipeline) and print the report; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    levels = [int(c) for c in args.levels.split(",")]
    cache_dir = ServerConfig().cache_path
    path = resolve_source(args.model, cache_dir)
    scheduler = SchedulerSettings(
        max_num_seqs=max(max(levels), SchedulerSettings().max_num_seqs),
        enable_prefix_caching=not args.no_prefix_caching,
    )
    spec = ModelSpec(id=MODEL_ID, source=str(path), device=args.device, scheduler=scheduler)
    properties = default_properties(args.device, {}, cache_dir / "compiled")  # as the server loads it
    scheduler_dict = msgspec.structs.asdict(scheduler)

    http_levels, pings, turns, repeated, idle, cpu, memory = _run_http(args, spec, levels)
    peer = _run_peer(args, levels) if args.peer else None
    raw_levels: dict[int, LevelResult] = {}
    if not args.no_raw:
        from adapters.export.raw_pipeline import RawPipeline  # late: the server must not share the CPU

        from .raw import loaded_path

        loaded = loaded_path(str(path))  # the same files as the server (a GGUF's kept conversion)
        logger.info("raw pipeline in-process: loading %s", loaded)
        raw = RawPipeline(loaded, args.device, properties, scheduler_dict)
        for c in levels:
            logger.info("raw pipeline: concurrency %d", c)
            raw_levels[c] = median_run(
                [raw.level(story_prompts(c), args.max_tokens) for _ in range(args.repeats)]
            )
    run = BenchRun(
        model=path,
        device=args.device,
        max_tokens=args.max_tokens,
        turn_tokens=args.turn_tokens,
        conversations=args.conversations,
        http=http_levels,
        pings=pings,
        idle_pings=idle,
        turns=turns,
        repeated=repeated,
        raw=raw_levels,
        peer=peer,
        memory=memory,
        cpu=cpu,
    )
    report = render(run)
    sys.stdout.write(report)
    if args.markdown:
        Path(args.markdown).write_text(report)
    return 0


def story_prompts(count: int) -> list[str]:
    """``count`` story prompts, cycling through ``TOPICS``: the concurrency sweep's workload."""
    return [f"Write a long story about {TOPICS[i % len(TOPICS)]}." for i in range(count)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openarc bench", description=__doc__.splitlines()[0].strip("`"))
    parser.add_argument("--model", default="demo", help="model source (default: the demo model)")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--levels", default="1,2,4,8,16", help="concurrency levels")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens generated per request")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per level; the median-throughput run counts"
    )
    parser.add_argument("--conversations", type=int, default=4, help="multi-turn: conversations")
    parser.add_argument("--turns", type=int, default=8, help="multi-turn: turns per conversation")
    parser.add_argument("--turn-tokens", type=int, default=48, help="multi-turn: tokens per reply")
    parser.add_argument("--base-url", help="use a running server (root URL) serving --model-id instead")
    parser.add_argument("--model-id", default=MODEL_ID, help="model id on --base-url")
    parser.add_argument("--no-raw", action="store_true", help="skip the in-process raw pipeline")
    parser.add_argument("--no-prefix-caching", action="store_true", help="serve with prefix caching off")
    parser.add_argument(
        "--peer",
        help="also drive another OpenAI-compatible server (root URL, e.g. llama.cpp's) with the same "
        "workloads and report OpenArc/peer ratios",
    )
    parser.add_argument("--peer-model", help="model id on --peer (default: the first it lists)")
    parser.add_argument(
        "--peer-body",
        help="JSON merged into every request to the peer: its own way to keep generating to max_tokens "
        'when it ignores ignore_eos (llama-cpp-python: \'{"logit_bias": {"2": -100}}\' for the demo model)',
    )
    parser.add_argument(
        "--peer-pid", type=int, action="append", default=[], help="the peer's processes, for its memory"
    )
    parser.add_argument("--markdown", help="also write the report to this file")
    return parser


def _run_http(args, spec: ModelSpec, levels: list[int]):
    if args.base_url:
        url = args.base_url.rstrip("/")
        return *asyncio.run(_http_workloads(url, args.model_id, args, levels)), server_memory(url)
    with serving([spec]) as url:
        results = asyncio.run(_http_workloads(url, MODEL_ID, args, levels))
        return *results, server_memory(url)


def _run_peer(args, levels: list[int]) -> PeerRun:
    url = args.peer.rstrip("/").removesuffix("/v1")
    model = (
        args.peer_model
        or httpx.get(f"{url}/v1/models", timeout=30).raise_for_status().json()["data"][0]["id"]
    )
    logger.info("peer %s: model %s", url, model)
    extra = json.loads(args.peer_body) if args.peer_body else None
    http_levels, _, turns, _, _, _ = asyncio.run(_http_workloads(url, model, args, levels, extra))
    memory = [(f"peer pid {pid}", pid, rss) for pid in args.peer_pid for rss in [process_rss_mb(pid)]]
    return PeerRun(url, model, http_levels, turns, memory)


async def _http_workloads(url: str, model: str, args, levels: list[int], extra: dict | None = None):
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await stream_chat(client, model, [{"role": "user", "content": "Hello"}], 8)  # warm the path
    idle = await idle_pings(url)
    results: dict[int, LevelResult] = {}
    pings: dict[int, list[float]] = {}
    processes = server_memory(url)  # empty for a peer on its own: its CPU is not counted
    cpu: dict[int, dict[str, float]] = {}
    for c in levels:
        logger.info("HTTP: concurrency %d", c)
        before, started = cpu_seconds(processes), time.perf_counter()
        runs = [
            await concurrency_level(url, model, story_prompts(c), args.max_tokens, extra)
            for _ in range(args.repeats)
        ]
        wall, after = time.perf_counter() - started, cpu_seconds(processes)
        cpu[c] = {role: (after[role] - before[role]) / wall for role in after}
        results[c] = median_run([level for level, _ in runs])
        pings[c] = [ping for _, run_pings in runs for ping in run_pings]
    logger.info("HTTP: multi-turn, %d conversations x %d turns", args.conversations, args.turns)
    turns = await multi_turn(url, model, args.conversations, args.turns, args.turn_tokens, extra)
    repeated = await repeated_prompt(url, model)
    return results, pings, turns, repeated, idle, cpu


if __name__ == "__main__":
    sys.exit(main())
