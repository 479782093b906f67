"""``python -m bench.contention``: what a little CPU taken by another process costs the engine.

Runs the raw pipeline (no HTTP) at one concurrency level alone and beside a process that only burns a
given share of one core in short bursts, as a server and a client on the same machine do (they wake
once per token). Rounds alternate alone / beside, so a drift in the machine's speed hits both alike.
OpenVINO's inference threads meet after every operation, so on a small machine a process that takes
a few percent of the CPU can cost the engine more than its share; this measures how much, with the
inference threads pinned (OpenVINO's default) and not.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time

import msgspec

BURST_PERIOD = 0.01
"""Seconds between the burner's wake-ups (a token's time, roughly)."""


def burn(share: float) -> None:
    """Busy for ``share`` of every ``BURST_PERIOD``, asleep for the rest, until killed."""
    while True:
        started = time.perf_counter()
        while time.perf_counter() - started < BURST_PERIOD * share:
            pass
        time.sleep(BURST_PERIOD * (1 - share))


def main(argv: list[str] | None = None) -> int:
    """Measure alone and beside the burning process, pinned and not, and print the Markdown table."""
    parser = argparse.ArgumentParser(prog="python -m bench.contention", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="model source (default: the demo model)")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--share", type=float, default=0.15, help="cores the other process burns")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    from adapters.export.raw_pipeline import RawPipeline
    from adapters.openvino.spec import default_properties
    from gateway.config import SchedulerSettings

    from .__main__ import story_prompts
    from .raw import loaded_path

    path = loaded_path(args.model)
    settings = SchedulerSettings(max_num_seqs=max(16, args.concurrency), cache_size=1)
    scheduler = msgspec.structs.asdict(settings)
    prompts = story_prompts(args.concurrency)
    lines = [
        f"{args.model} on {args.device}, raw pipeline, C={args.concurrency}, {args.max_tokens} tokens a "
        f"request, aggregate tok/s (median of {args.rounds}), alone and beside a process burning "
        f"{args.share:.2f} cores.",
        "",
        "| inference threads | alone tok/s | beside it tok/s | beside / alone |",
        "|---|---|---|---|",
    ]
    spawn = multiprocessing.get_context("spawn")
    for pinned in (True, False):
        properties = default_properties(args.device, {"ENABLE_CPU_PINNING": pinned})
        pipeline = RawPipeline(path, args.device, properties, scheduler)
        alone, beside = [], []
        for _ in range(args.rounds):
            alone.append(pipeline.level(prompts, args.max_tokens).tokens_per_second)
            burner = spawn.Process(target=burn, args=(args.share,), daemon=True)
            burner.start()
            try:
                beside.append(pipeline.level(prompts, args.max_tokens).tokens_per_second)
            finally:
                burner.kill()
                burner.join()
        alone_rate, beside_rate = statistics.median(alone), statistics.median(beside)
        lines.append(
            f"| {'pinned' if pinned else 'not pinned'} | {alone_rate:.1f} | {beside_rate:.1f} | "
            f"{beside_rate / alone_rate:.2f}x |"
        )
        del pipeline
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
