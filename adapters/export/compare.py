"""``openarc compare``: several exports of one model side by side, in one table, to pick one.

Each model can be measured at several inference precisions (``--precision f32,bf16``): a row is a model
at one precision, as the server would load it with that ``inference_precision``, because the same
weights in bf16 and in f32 are two different things to choose between. The precision column is what
the device really computed in (a CPU without bf16 runs a bf16 request in f32), and the notes name the
CPU and its flags: figures from different machines are different facts.

Speed and memory: each row is measured in a fresh process (so its peak memory is its own) on
openvino-genai's ``ContinuousBatchingPipeline``, the engine the server runs, with the server's scheduler
defaults and prefix caching off (a repeated prompt must not hide the prefill): load time (first load,
no compiled-model cache, warm-up included), time to first token and decode tok/s of one stream (medians
of ``--repeats`` runs), aggregate tok/s of 8 requests started together (the median of ``--repeats``
runs), prefill tok/s of a 2,000-token prompt (the median of ``--repeats`` runs; where bf16 and AMX
pay off), and peak resident memory.

Quality: teacher-forced figures against the reference on a fixed text (``adapters.export.quality``):
perplexity, mean and 99th-percentile KL divergence from the reference's next-token distribution, top-1
agreement. The reference is the most precise model by its weights (fp32, then fp16, int8, int4), at
the most precise inference precision measured (f32 before bf16 and f16), or ``--reference`` (at that
precision). A ``.gguf`` is measured through the IR openvino-genai converts it to (cached under the
OpenArc cache's ``converted`` folder, shared with the server), since that is what serving it runs.

The weights column is read from the IR (``adapters.export.precision``): the share of weight parameters
in each precision and the int4 group sizes.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..openvino.model_files import disk_size, read_manifest
from ..openvino.spec import InferencePrecision
from .precision import PrecisionCensus, precision_census
from .quality import (
    QualityError,
    QualityFigures,
    Variant,
    compare_quality,
    default_text,
    readable_ir,
)

logger = logging.getLogger(__name__)

PROMPTS = [
    "What is the capital of France?",
    "Explain in two sentences why the sky is blue.",
    "Write a short poem about autumn leaves.",
    "List three uses of a paperclip.",
    "What is 12 times 7? Answer with the number and one sentence.",
    "Describe a cat to someone who has never seen one.",
    "Give me a recipe for a simple tomato soup.",
    "Why do leaves change colour in the autumn?",
]
CONCURRENCY = 8
PREFILL_TOKENS = 2000
"""The prompt whose prefill is timed: long enough that the matrix products, where bf16 and AMX help,
outweigh the per-step costs."""
# Higher is more precise: the reference is the most precise model, by what its weights hold.
_PRECISION_RANK = {"fp32": 5, "bf16": 4, "fp16": 4, "int8": 3, "fp8": 3, "int4": 2, "nf4": 2}
_INFERENCE_RANK = {"f32": 2, "bf16": 1, "f16": 1}


@dataclass
class Speed:
    """One model's speed and memory, measured in its own process."""

    load_s: float
    ttft_ms: float
    decode_tok_s: float
    concurrent_tok_s: float
    prefill_tok_s: float
    peak_rss_mb: float


@dataclass
class Row:
    """One line of the table."""

    model: str
    path: str
    made: str
    weights: str
    inference_precision: str
    """What the device computed in (``f32``, ``bf16``, ``f16``; ``default`` where it decides itself)."""
    precision_asked: str
    """The ``inference_precision`` setting the row was loaded with (``auto``, ``f32``, ...)."""
    size_mb: float
    speed: Speed
    quality: QualityFigures | None
    quality_note: str = ""
    reference: bool = False


def measure_speed(
    path: Path,
    device: str,
    max_tokens: int,
    repeats: int,
    precision: InferencePrecision = "auto",
    scheduler: dict[str, Any] | None = None,
) -> Speed:
    """Load ``path`` on ``device`` at ``precision`` and measure it (runs inside the child process).

    ``scheduler`` is the server's scheduler settings (``SchedulerSettings`` as a dict), with room for 16
    sequences, and prefix caching turned off so that a repeated prompt pays its prefill.
    """
    from ..openvino.spec import default_properties
    from .raw_pipeline import RawPipeline
    from .timing import median_run

    scheduler = {
        **(scheduler or {}),
        "max_num_seqs": max(CONCURRENCY, 16),
        "enable_prefix_caching": False,
    }
    started = time.perf_counter()
    properties = default_properties(device, {}, inference_precision=precision)  # as the server would
    pipeline = RawPipeline(path, device, properties, scheduler)  # includes openvino-genai's warm-up request
    load_s = time.perf_counter() - started
    single = [pipeline.level([PROMPTS[i % len(PROMPTS)]], max_tokens) for i in range(repeats)]
    concurrent = median_run([pipeline.level(PROMPTS[:CONCURRENCY], max_tokens) for _ in range(repeats)])
    long_prompt = pipeline.tokenizer.encode(default_text(), add_special_tokens=False).input_ids.data[0]
    prefill = [pipeline.prefill_seconds(long_prompt[:PREFILL_TOKENS]) for _ in range(repeats)]
    return Speed(
        load_s=load_s,
        ttft_ms=_median([run.requests[0].ttft for run in single]) * 1000,
        decode_tok_s=_median([run.requests[0].decode_rate for run in single]),
        concurrent_tok_s=concurrent.tokens_per_second,
        prefill_tok_s=min(PREFILL_TOKENS, len(long_prompt)) / _median(prefill),
        peak_rss_mb=_peak_rss_mb(),
    )


def _peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's ``VmHWM`` starts again at ``exec``; ``ru_maxrss``
    does not: a child inherits the parent's peak (a sweep's parent has exported models, about 3 GB)."""
    try:
        status = Path("/proc/self/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def compare_models(
    models: list[Path],
    device: str = "CPU",
    reference: Path | None = None,
    text: str | None = None,
    max_tokens: int = 64,
    repeats: int = 3,
    quality: bool = True,
    precisions: tuple[InferencePrecision, ...] = ("auto",),
    gguf_cache: Path | None = None,
    scheduler: dict[str, Any] | None = None,
) -> list[Row]:
    """Measure every model at every precision (speed in child processes, then quality here) and return
    the table's rows, model by model; a ``.gguf`` is measured through its IR conversion, kept in
    ``gguf_cache`` (the server's ``<cache_dir>/converted``, so the two share it); ``scheduler`` is the
    server's scheduler settings, as a dict."""
    from adapters.openvino.devices import effective_precision
    from adapters.openvino.spec import precision_hint

    computed = {p: effective_precision(device, precision_hint(device, p)) or "default" for p in precisions}
    variants = [Variant(path, precision) for path in models for precision in precisions]
    speeds = {}
    for variant in variants:
        logger.info("speed and memory: %s at %s", variant.path.name, computed[variant.precision])
        speeds[variant] = _speed_in_child(variant, device, max_tokens, repeats, scheduler)
    censuses = {path: _census(path, gguf_cache if quality else None) for path in models}
    reference_path = reference or max(models, key=lambda path: _precision_rank(path, censuses[path]))
    most_precise = max(precisions, key=lambda p: _INFERENCE_RANK.get(computed[p], 0))
    reference_variant = Variant(reference_path, most_precise)
    figures: dict[Variant, QualityFigures] = {}
    note = ""
    if quality:
        try:
            figures = compare_quality(reference_variant, variants, text, device, gguf_cache=gguf_cache)
        except QualityError as exc:
            note = str(exc)
            logger.warning("no quality figures: %s", note)
        censuses = {path: censuses[path] or _census(path, gguf_cache) for path in models}
    return [
        Row(
            model=variant.path.name,
            path=str(variant.path),
            made=_made(variant.path),
            weights=_weights(censuses[variant.path]),
            inference_precision=computed[variant.precision],
            precision_asked=variant.precision,
            size_mb=(disk_size(variant.path) or 0) / 1e6,
            speed=speeds[variant],
            quality=figures.get(variant),
            quality_note=note if quality else "not measured (--no-quality)",
            reference=variant == reference_variant,
        )
        for variant in variants
    ]


def recommend(rows: list[Row], kl_threshold: float) -> Row | None:
    """The fastest model at C=8 whose mean KL divergence from the reference stays under the threshold.

    The reference itself qualifies (its divergence is zero by definition).
    """
    good = [row for row in rows if row.reference or _kl_mean(row) < kl_threshold]
    return max(good, key=lambda row: row.speed.concurrent_tok_s, default=None)


def _kl_mean(row: Row) -> float:
    return row.quality.kl_mean if row.quality and row.quality.kl_mean is not None else math.inf


COLUMNS = [
    "model",
    "made",
    "weights",
    "precision",
    "size MB",
    "load s",
    "TTFT ms",
    "tok/s C=1",
    f"tok/s C={CONCURRENCY}",
    "prefill tok/s",
    "peak RSS MB",
    "PPL",
    "KL mean",
    "KL p99",
    "top-1",
]


def table_cells(row: Row) -> list[str]:
    """The row as the table shows it; quality cells say ``n/a`` when they could not be measured."""
    s, q = row.speed, row.quality
    cells = [
        row.model,
        row.made,
        row.weights,
        row.inference_precision,
        f"{row.size_mb:.0f}",
        f"{s.load_s:.1f}",
        f"{s.ttft_ms:.0f}",
        f"{s.decode_tok_s:.1f}",
        f"{s.concurrent_tok_s:.1f}",
        f"{s.prefill_tok_s:.0f}",
        f"{s.peak_rss_mb:.0f}",
    ]
    if q is None:
        return [*cells, "n/a", "n/a", "n/a", "n/a"]
    if row.reference:
        return [*cells, f"{q.perplexity:.2f}", "reference", "reference", "reference"]
    return [*cells, f"{q.perplexity:.2f}", f"{q.kl_mean:.4f}", f"{q.kl_p99:.3f}", f"{q.top1_agreement:.1%}"]


def render(rows: list[Row], form: str, kl_threshold: float | None = None) -> str:
    """The table as aligned text, Markdown or JSON, with notes (and a recommendation when asked)."""
    chosen = recommend(rows, kl_threshold) if kl_threshold is not None else None
    if form == "json":
        from adapters.openvino.devices import cpu_summary

        document = {
            "cpu": cpu_summary(),
            "rows": [_json_row(row) for row in rows],
            "kl_threshold": kl_threshold,
            "recommended": chosen.path if chosen else None,
        }
        return json.dumps(document, indent=2)
    body = [COLUMNS, *(table_cells(row) for row in rows)]
    if form == "markdown":
        lines = ["| " + " | ".join(body[0]) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body[1:]]
    else:
        widths = [max(len(cells[i]) for cells in body) for i in range(len(COLUMNS))]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
            for cells in body
        ]
    lines += ["", *_notes(rows)]
    if kl_threshold is not None:
        lines.append(_recommendation(chosen, kl_threshold))
    return "\n".join(lines).rstrip() + "\n"


def _speed_in_child(
    variant: Variant, device: str, max_tokens: int, repeats: int, scheduler: dict[str, Any] | None
) -> Speed:
    arguments = [str(variant.path), device, str(max_tokens), str(repeats), variant.precision]
    arguments.append(json.dumps(scheduler or {}))
    done = subprocess.run([sys.executable, "-c", _CHILD, *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"measuring {variant.label} failed:\n{done.stderr[-2000:]}")
    return Speed(**json.loads(done.stdout.strip().splitlines()[-1]))


# The child process: measure one model at one precision and print the result as one JSON line.
_CHILD = (
    "import json, sys, dataclasses, pathlib; from adapters.export.compare import measure_speed; "
    "print(json.dumps(dataclasses.asdict(measure_speed(pathlib.Path(sys.argv[1]), sys.argv[2], "
    "int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], json.loads(sys.argv[6])))))"
)


def _census(path: Path, gguf_cache: Path | None) -> PrecisionCensus | None:
    """The weights' census of an IR folder, or of a GGUF's converted IR once it exists."""
    if path.suffix.lower() == ".gguf":
        if gguf_cache is None:
            return None
        try:
            path = readable_ir(path, gguf_cache)
        except QualityError:
            return None
    if not (path / "openvino_model.xml").is_file():
        return None
    return precision_census(path)


def _precision_rank(path: Path, census: PrecisionCensus | None) -> tuple[int, float]:
    """Rank by the precision holding most weights, then by how much of them it holds."""
    if census is None:
        manifest = read_manifest(path) or {}
        return _PRECISION_RANK.get(manifest.get("options", {}).get("weight_format", ""), 0), 0.0
    shares = sorted(census.weights.items(), key=lambda item: (-_PRECISION_RANK.get(item[0], 0), -item[1]))
    best, share = shares[0]
    return _PRECISION_RANK.get(best, 0), share


def _made(path: Path) -> str:
    if path.suffix.lower() == ".gguf":
        return "gguf"
    manifest = read_manifest(path) or {}
    return manifest.get("preset") or manifest.get("options", {}).get("weight_format") or "?"


def _weights(census: PrecisionCensus | None) -> str:
    """``int4 79% (g64), int8 21%``: the shares of weight parameters, with int4 group sizes."""
    if census is None:
        return "n/a"
    parts = []
    for precision, share in census.weights.items():
        if share < 0.005:
            continue
        groups = census.group_sizes.get(precision, [])
        sizes = f" (g{'/'.join(str(g) for g in groups)})" if precision == "int4" and groups else ""
        parts.append(f"{precision} {share:.0%}{sizes}")
    return ", ".join(parts)


def _notes(rows: list[Row]) -> list[str]:
    reference = next((row for row in rows if row.reference), None)
    first = next((row.quality for row in rows if row.quality), None)
    from adapters.openvino.devices import cpu_summary

    notes = [f"Machine: {cpu_summary()}."]
    if reference and first:
        notes.append(
            f"Quality: teacher-forced on {first.positions} token positions against {reference.model} at "
            f"{reference.inference_precision}; KL in nats. Speed: ContinuousBatchingPipeline, greedy, "
            f"prefix caching off; C={CONCURRENCY} is the aggregate of {CONCURRENCY} requests started "
            f"together; prefill is the first token of a {PREFILL_TOKENS}-token prompt."
        )
    for row in rows:
        if row.quality is None and row.quality_note:
            notes.append(f"{row.model}: no quality figures: {row.quality_note}")
        elif row.quality and row.quality.tokenizer_differences:
            notes.append(
                f"{row.model}: its tokenizer splits the text differently from the reference's in "
                f"{row.quality.tokenizer_differences} places (it was scored on the reference's tokens)"
            )
    return notes


def _recommendation(chosen: Row | None, kl_threshold: float) -> str:
    if chosen is None:
        return f"Recommended: none: no model stays under a mean KL of {kl_threshold}."
    return (
        f"Recommended: {chosen.model} ({chosen.path}) with inference_precision {chosen.precision_asked!r} "
        f"({chosen.inference_precision}): the fastest at C={CONCURRENCY} "
        f"({chosen.speed.concurrent_tok_s:.1f} tok/s) whose mean KL from the reference stays under "
        f"{kl_threshold}."
    )


def _json_row(row: Row) -> dict:
    document = asdict(row)
    document["quality"] = asdict(row.quality) if row.quality else None
    return document


def _median(values: list[float]) -> float:
    ordered = sorted(value for value in values if not math.isnan(value))
    return ordered[len(ordered) // 2] if ordered else float("nan")
