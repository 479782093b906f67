"""``openarc compare``: several exports of one model side by side, to pick a configuration.

Each model is measured in a fresh process (so peak memory is its own): load time, time to first token,
single-stream decode speed, peak resident memory, and greedy answers to a fixed set of prompts. The
quality signal is word agreement of those greedy answers with the reference model (the highest
precision among the candidates, or ``--reference``): 100 % means identical answers.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from gateway.catalog import disk_size, read_manifest

PROMPTS = [
    "What is the capital of France?",
    "Explain in two sentences why the sky is blue.",
    "Write a short poem about autumn leaves.",
    "List three uses of a paperclip.",
    "What is 12 times 7? Answer with the number and one sentence.",
    "Describe a cat to someone who has never seen one.",
]
ANSWER_TOKENS = 48
# Higher is more precise; a reference is picked from the most precise candidate.
_PRECISION = {"fp32": 5, "fp16": 4, "bf16": 4, "int8": 3, "int4": 2}


@dataclass
class Measurement:
    """One model, measured in its own process."""

    path: str
    load_s: float
    ttft_ms: float
    decode_tok_s: float
    peak_rss_mb: float
    answers: list[str]


def measure(path: Path, device: str) -> Measurement:
    """Load ``path`` on ``device`` and measure it (runs inside the child process)."""
    import openvino_genai as ov_genai

    started = time.perf_counter()
    pipeline = ov_genai.LLMPipeline(str(path), device)
    load_s = time.perf_counter() - started
    answers, ttfts, rates = [], [], []
    for prompt in PROMPTS:
        stamps: list[float] = []

        def on_text(_: str, stamps: list[float] = stamps) -> ov_genai.StreamingStatus:
            stamps.append(time.perf_counter())
            return ov_genai.StreamingStatus.RUNNING

        config = ov_genai.GenerationConfig()
        config.max_new_tokens = ANSWER_TOKENS
        history = ov_genai.ChatHistory([{"role": "user", "content": prompt}])
        start = time.perf_counter()
        result = pipeline.generate(history, config, on_text)
        answers.append(str(result.texts[0]) if hasattr(result, "texts") else str(result))
        if stamps:
            ttfts.append(stamps[0] - start)
        if len(stamps) > 1:
            rates.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return Measurement(str(path), load_s, _median(ttfts) * 1000, _median(rates), peak, answers)


def word_agreement(answers: list[str], reference: list[str]) -> float:
    """Share of word positions where two sets of greedy answers agree (1.0 = identical)."""
    same = total = 0
    for mine, theirs in zip(answers, reference, strict=True):
        a, b = mine.split(), theirs.split()
        total += max(len(a), len(b))
        same += sum(x == y for x, y in zip(a, b, strict=False))
    return same / total if total else 1.0


def precision_of(path: Path) -> int:
    manifest = read_manifest(path) or {}
    return _PRECISION.get(manifest.get("options", {}).get("weight_format", ""), 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="openarc compare", description="Compare exports of one model.")
    parser.add_argument("models", nargs="+", type=Path, help="exports (or .gguf files) of the same model")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--reference", type=Path, help="the model others are compared with")
    parser.add_argument("--json", help="also write the measurements to this file")
    args = parser.parse_args(argv)
    results = [_measure_in_child(path, args.device) for path in args.models]
    reference = args.reference or max(args.models, key=precision_of)
    reference_answers = next(r.answers for r in results if Path(r.path) == reference)
    sys.stdout.write(_table(results, reference, reference_answers) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


def _measure_in_child(path: Path, device: str) -> Measurement:
    command = [sys.executable, "-c", _CHILD, str(path), device]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"measuring {path} failed:\n{done.stderr[-2000:]}")
    return Measurement(**json.loads(done.stdout.strip().splitlines()[-1]))


# The child process: measure one model and print the result as one JSON line.
_CHILD = (
    "import json, sys, dataclasses, pathlib; from bench.compare import measure; "
    "print(json.dumps(dataclasses.asdict(measure(pathlib.Path(sys.argv[1]), sys.argv[2]))))"
)


def _table(results: list[Measurement], reference: Path, reference_answers: list[str]) -> str:
    header = ["model", "made", "size MB", "load s", "TTFT ms", "decode tok/s", "peak RSS MB", "agreement"]
    rows = [header, ["---"] * len(header)]
    for r in results:
        path = Path(r.path)
        manifest = read_manifest(path) or {}
        made = manifest.get("preset") or ("gguf" if path.suffix == ".gguf" else "?")
        agreement = (
            "reference" if path == reference else f"{word_agreement(r.answers, reference_answers):.0%}"
        )
        size = f"{(disk_size(path) or 0) / 1e6:.0f}"
        speed = [f"{r.load_s:.1f}", f"{r.ttft_ms:.0f}", f"{r.decode_tok_s:.1f}", f"{r.peak_rss_mb:.0f}"]
        rows.append([path.name, made, size, *speed, agreement])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else float("nan")


if __name__ == "__main__":
    sys.exit(main())
