"""``python -m bench.settings``: OpenVINO and scheduler settings of one model, compared over HTTP in one run.

Starts the server once per variant (the default settings first, then each variant alone) and measures
aggregate decode tok/s at each concurrency level, greedy, ``ignore_eos``; prints every variant against
the default measured in the same run. The variants are the settings that decide how the engine's
inference threads share a small machine with the server and the client (thread count, pinning, the
performance hint) and what a step costs (KV-cache precision, the scheduler's token budget).

On a shared or small machine the speed drifts by more than a setting changes it (measured here: the
same KV-precision change read 0.86x and 1.24x in two such runs). ``--interleaved`` loads every
variant's pipeline side by side in this process and takes turns run by run, so a drift hits all of
them alike; it measures the engine without HTTP, which is where these settings act.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys

import msgspec

from gateway.config import ModelSpec, SchedulerSettings
from gateway.harness import serving

from .__main__ import story_prompts
from .http_load import concurrency_level

VARIANTS: dict[str, tuple[dict, dict]] = {
    "default": ({}, {}),
    "ENABLE_CPU_PINNING=False": ({"ENABLE_CPU_PINNING": False}, {}),
    "INFERENCE_NUM_THREADS=1": ({"INFERENCE_NUM_THREADS": 1}, {}),
    "PERFORMANCE_HINT=THROUGHPUT": ({"PERFORMANCE_HINT": "THROUGHPUT"}, {}),
    "KV_CACHE_PRECISION=u8": ({"KV_CACHE_PRECISION": "u8"}, {}),
    "max_num_batched_tokens=512": ({}, {"max_num_batched_tokens": 512}),
    # What activations are computed in (issue 18): the default is OpenArc's auto (f32 on CPU).
    "INFERENCE_PRECISION_HINT=bf16": ({"INFERENCE_PRECISION_HINT": "bf16"}, {}),
    "INFERENCE_PRECISION_HINT=f16": ({"INFERENCE_PRECISION_HINT": "f16"}, {}),
    "DYNAMIC_QUANTIZATION_GROUP_SIZE=0": ({"DYNAMIC_QUANTIZATION_GROUP_SIZE": 0}, {}),
    "INFERENCE_PRECISION_HINT=bf16+DYNAMIC_QUANTIZATION_GROUP_SIZE=0": (
        {"INFERENCE_PRECISION_HINT": "bf16", "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0},
        {},
    ),
}
Figures = dict[str, dict[int | str, float]]
"""Variant name -> concurrency -> aggregate tok/s (and ``"prefill"`` -> prefill tok/s, when measured)."""


def main(argv: list[str] | None = None) -> int:
    """Measure the default and each variant (over HTTP, or in this process) and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.settings", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="model source (default: the demo model)")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--levels", default="1,8")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="runs per level (median)")
    parser.add_argument("--only", help="comma-separated variant names (default: all)")
    parser.add_argument(
        "--prefill",
        type=int,
        default=0,
        help="--interleaved: also time the prefill of a prompt of this many tokens (OpenArc's quality text)",
    )
    parser.add_argument(
        "--interleaved",
        action="store_true",
        help="load every variant's pipeline in this process and take turns run by run, so a drift in the "
        "machine's speed hits every variant alike (no HTTP; 1 GB of KV cache each)",
    )
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.levels.split(",")]
    names = ["default", *[n for n in (args.only.split(",") if args.only else VARIANTS) if n != "default"]]
    if args.interleaved:
        sys.stdout.write(_table(_interleaved(names, levels, args), levels, args, "in-process, interleaved"))
        return 0
    results: Figures = {}
    for name in names:
        properties, scheduler = VARIANTS[name]
        sys.stderr.write(f"{name} ...\n")
        spec = ModelSpec(
            id="bench",
            source=args.model,
            device=args.device,
            properties=properties,
            scheduler=SchedulerSettings(max_num_seqs=max(16, *levels), **scheduler),
        )
        results[name] = _measure(spec, levels, args.max_tokens, args.repeats)
    sys.stdout.write(_table(results, levels, args, "over HTTP, one variant after the other"))
    return 0


def _interleaved(names: list[str], levels: list[int], args: argparse.Namespace) -> Figures:
    """Every variant's raw pipeline loaded side by side; each round runs each level on each in turn."""
    from adapters.export.raw_pipeline import RawPipeline
    from adapters.openvino.spec import default_properties

    from .raw import loaded_path

    path = loaded_path(args.model)
    pipelines = {}
    for name in names:
        properties, scheduler = VARIANTS[name]
        settings = SchedulerSettings(max_num_seqs=max(16, *levels), cache_size=1, **scheduler)
        sys.stderr.write(f"loading {name} ...\n")
        pipelines[name] = RawPipeline(
            path,
            args.device,
            default_properties(args.device, properties),
            msgspec.structs.asdict(settings),
        )
    columns: list[int | str] = [*levels, *(["prefill"] if args.prefill else [])]
    runs: dict[str, dict[int | str, list[float]]] = {name: {c: [] for c in columns} for name in names}
    long_prompt: list[int] = []
    if args.prefill:
        from adapters.export.quality import default_text

        tokenizer = next(iter(pipelines.values())).tokenizer
        long_prompt = list(tokenizer.encode(default_text(), add_special_tokens=False).input_ids.data[0])
        long_prompt = long_prompt[: args.prefill]
    for round_number in range(args.repeats):
        for c in levels:
            for name, pipeline in pipelines.items():
                runs[name][c].append(pipeline.level(story_prompts(c), args.max_tokens).tokens_per_second)
        for name, pipeline in pipelines.items():
            if long_prompt:  # prefix caching is on, as the server has it: another first token each round
                ids = [1000 + round_number, *long_prompt[1:]]
                runs[name]["prefill"].append(len(ids) / pipeline.prefill_seconds(ids))
    return {name: {c: statistics.median(r) for c, r in by_level.items()} for name, by_level in runs.items()}


def _measure(spec: ModelSpec, levels: list[int], max_tokens: int, repeats: int) -> dict[int, float]:
    with serving([spec]) as url:
        return asyncio.run(_levels(url, levels, max_tokens, repeats))


async def _levels(url: str, levels: list[int], max_tokens: int, repeats: int) -> dict[int, float]:
    await concurrency_level(url, "bench", story_prompts(2), 8)  # warm the path
    measured = {}
    for c in levels:
        runs = [await concurrency_level(url, "bench", story_prompts(c), max_tokens) for _ in range(repeats)]
        measured[c] = statistics.median(level.tokens_per_second for level, _ in runs)
    return measured


def _table(results: Figures, levels: list[int], args: argparse.Namespace, how: str) -> str:
    from adapters.openvino.devices import cpu_summary

    default = results["default"]
    columns = [c for c in default if c in levels or c == "prefill"]
    names = [f"C={c} tok/s" if c != "prefill" else f"prefill of {args.prefill} tok/s" for c in columns]
    lines = [
        f"Settings of {args.model} on {args.device}, aggregate tok/s {how}, {args.max_tokens} tokens a "
        f"request, median of {args.repeats}; ratios against the default of this run. "
        f"CPU: {cpu_summary()}.",
        "",
        "| variant | " + " | ".join(f"{name} | vs default" for name in names) + " |",
        "|---|" + "---|---|" * len(columns),
    ]
    for name, measured in results.items():
        cells = " | ".join(f"{measured[c]:.1f} | {measured[c] / default[c]:.2f}x" for c in columns)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
