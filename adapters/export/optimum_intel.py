"""``openarc export``: a model to an OpenVINO IR folder with optimum-intel, ahead of time.

Sources: a Hugging Face model id (downloaded with huggingface-hub), a local transformers folder, or a
``.gguf`` file (read by transformers, tokenizer checked and repaired, see ``gguf_source``). Chat, embedding
and rerank models (see ``tasks``). The output folder holds the IR, the OpenVINO tokenizer and detokenizer,
the chat template (chat models), the sentence-transformers configuration (embedding models) and
``openarc-export.json`` (how it was made, and the precisions its weights really have, see ``precision``).
It is written next to its final name and renamed at the end, so a failed export never leaves a folder
that looks valid. optimum-intel (and torch) come from the ``export`` extra and are imported only here,
lazily.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..base import first_line
from ..openvino.model_files import MANIFEST, TASKS, Task, detect_format, detect_task
from .gguf_source import (
    TOKENIZER_SAMPLES,
    gguf_to_transformers,
    hf_encoder,
    openvino_encoder,
    tokenizer_mismatches,
)
from .precision import precision_census
from .tasks import OPTIMUM_TASKS, copy_sentence_transformers_files

logger = logging.getLogger(__name__)

WeightFormat = Literal["fp32", "fp16", "int8", "int4"]
_GROUP_SIZES = (128, 64, 32, 16, 8)


@dataclass(frozen=True)
class ExportOptions:
    """What the model is for and how to compress its weights; the fields mirror optimum-cli's options."""

    weight_format: WeightFormat = "int4"
    sym: bool = False
    group_size: int | None = None
    """int4 only: weights per quantization group (default 128; a divisor of the layer sizes is picked)."""
    ratio: float | None = None
    """int4 only: share of layers in int4, the rest in int8 (default 1.0)."""
    awq: bool = False
    scale_estimation: bool = False
    gptq: bool = False
    dataset: str | None = None
    """For data-aware compression: ``auto`` (the model writes its own calibration text), a local text
    file (one sample per paragraph), or a dataset name (needs the Hugging Face Hub)."""
    num_samples: int | None = None
    trust_remote_code: bool = False
    # Last, so that positional construction (``ExportOptions("int8")``) keeps meaning the weight format.
    task: Task = "text-generation"
    """Chat (``text-generation``), embeddings (``feature-extraction``) or reranking
    (``text-classification``); recorded in the manifest as ``options.task``."""


PRESETS: dict[str, ExportOptions] = {
    # The recommended route: int4 weights, activation-aware scaling and scale estimation, calibrated
    # on text the model generates itself (works offline).
    "int4-awq-se": ExportOptions(
        "int4", group_size=128, ratio=1.0, awq=True, scale_estimation=True, dataset="auto"
    ),
    "int4": ExportOptions("int4", group_size=128, ratio=1.0),
    # What OpenVINO does when no weight format is given: rarely the best trade-off.
    "int8": ExportOptions("int8"),
    "fp16": ExportOptions("fp16"),
}


class ExportError(Exception):
    """The export failed; the message is one actionable line."""


def export_model(
    source: str, output: Path, options: ExportOptions, preset: str | None, force: bool = False
) -> dict:
    """Export ``source`` to ``output``; returns the manifest written there."""
    _check_task(options)
    output = output.expanduser().resolve()
    if output.exists() and not force:
        raise ExportError(f"{output} already exists (use --force to replace it)")
    started = time.monotonic()
    staging = output.parent / f".{output.name}.partial-{os.getpid()}"
    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tempfile.TemporaryDirectory(prefix="openarc-export-") as scratch, _progress_in_logs():
            model_dir, notes, reference = _transformers_source(source, Path(scratch), options)
            options, group_note = _valid_group_size(model_dir, options)
            notes += group_note
            _convert(model_dir, staging, options)
            if options.task == "feature-extraction":
                notes += copy_sentence_transformers_files(model_dir, staging)
            check = _check_tokenizer(staging, reference, options.task)
        manifest = _manifest(source, preset, options, notes, check, time.monotonic() - started)
        # What the IR really holds, read back from the file: the options above are only what was asked.
        manifest["precision"] = precision_census(staging).as_dict()
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("exported %s to %s in %.0f s", source, output, manifest["duration_s"])
    return manifest


@contextlib.contextmanager
def _progress_in_logs() -> Iterator[None]:
    """Make NNCF's progress bars visible when stderr is not a terminal (CI logs, a server's log).

    NNCF draws each compression stage (calibration text, statistics, AWQ, scale estimation, weight
    compression) with rich, which prints only the final frame off a terminal; a minutes-long export
    would look hung. While exporting, every bar also logs a line at most every 5 s.
    """
    import sys

    if sys.stderr.isatty():
        yield
        return
    from rich.progress import Progress

    last: dict[tuple[int, Any], float] = {}
    update, advance = Progress.update, Progress.advance

    def report(progress: Progress, task_id: Any) -> None:
        task = next((t for t in progress.tasks if t.id == task_id), None)
        if task is None:
            return
        finished = task.total is not None and task.completed >= task.total
        now = time.monotonic()
        if finished or now - last.get((id(progress), task_id), 0.0) >= 5:
            last[(id(progress), task_id)] = now
            logger.info("%s: %.0f%%", task.description, task.percentage)

    def logged_update(self: Progress, task_id: Any, *args: Any, **kwargs: Any) -> None:
        update(self, task_id, *args, **kwargs)
        report(self, task_id)

    def logged_advance(self: Progress, task_id: Any, amount: float = 1) -> None:
        advance(self, task_id, amount)
        report(self, task_id)

    Progress.update, Progress.advance = logged_update, logged_advance  # type: ignore[method-assign]
    try:
        yield
    finally:
        Progress.update, Progress.advance = update, advance  # type: ignore[method-assign]


def source_task(source: str) -> Task:
    """The task ``source`` (a ``.gguf`` file, a local folder or a hub id) was made for.

    For a hub id only ``config.json`` and ``modules.json`` are fetched; the export downloads the rest.
    """
    path = Path(source).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return "text-generation"  # transformers reads only decoder GGUFs
    if not path.exists():
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(source, allow_patterns=["config.json", "modules.json"]))
        except Exception as exc:  # noqa: BLE001 - any hub failure is one line for the user
            raise ExportError(
                f"{source} is not a local path and could not be downloaded: {first_line(exc)}"
            ) from exc
    return detect_task(path)


def _check_task(options: ExportOptions) -> None:
    """A known task, and data-aware compression (it calibrates on text the model writes) for chat only."""
    if options.task not in TASKS:
        raise ExportError(f"unknown task {options.task!r}; choose one of {', '.join(TASKS)}")
    if options.task == "text-generation":
        return
    flags = {
        "--awq": options.awq,
        "--scale-estimation": options.scale_estimation,
        "--gptq": options.gptq,
        "--dataset": options.dataset,
        "--num-samples": options.num_samples,
    }
    used = [flag for flag, value in flags.items() if value]
    if used:
        raise ExportError(
            f"{', '.join(used)}: data-aware compression applies to text-generation models only; "
            f"export {options.task} models with --preset fp16 (default), int8 or int4"
        )


def _transformers_source(source: str, scratch: Path, options: ExportOptions) -> tuple[Path, list[str], Any]:
    """A local transformers folder for ``source``, notes on repairs, and the reference tokenizer."""
    path = Path(source).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        import openvino_genai

        reference = openvino_encoder(openvino_genai.Tokenizer(str(path)))
        folder = scratch / "transformers"
        notes = gguf_to_transformers(path, folder, reference)
        return folder, notes, reference
    if path.exists():
        if detect_format(path) != "transformers":
            raise ExportError(f"{path} is neither a transformers model folder nor a .gguf file")
        folder = path
    else:
        from huggingface_hub import snapshot_download

        logger.info("downloading %s from the Hugging Face Hub", source)
        try:
            folder = Path(snapshot_download(source))
        except Exception as exc:  # noqa: BLE001 - any hub failure is one line for the user
            raise ExportError(
                f"{source} is not a local path and could not be downloaded: {first_line(exc)}"
            ) from exc
    from transformers import AutoTokenizer

    hf_tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=options.trust_remote_code)
    return folder, [], hf_encoder(hf_tokenizer)


def _valid_group_size(model_dir: Path, options: ExportOptions) -> tuple[ExportOptions, list[str]]:
    """int4 groups must divide every layer's input size; pick the largest size that does, and say so."""
    if options.weight_format != "int4":
        return options, []
    config = json.loads((model_dir / "config.json").read_text())
    sizes = [config.get(k) for k in ("hidden_size", "intermediate_size") if isinstance(config.get(k), int)]
    wanted = options.group_size or 128
    if all(size % wanted == 0 for size in sizes):
        return dataclasses.replace(options, group_size=wanted), []
    chosen = next((g for g in _GROUP_SIZES if g < wanted and all(size % g == 0 for size in sizes)), -1)
    note = f"group size {wanted} does not divide the layer sizes {sizes}; used {chosen}"
    logger.warning(note)
    return dataclasses.replace(options, group_size=chosen), [note]


def _convert(model_dir: Path, output: Path, options: ExportOptions) -> None:
    """Run optimum-intel: export to IR with weight compression, then the OpenVINO tokenizers."""
    import optimum.intel
    from optimum.intel import OVConfig, OVWeightQuantizationConfig
    from transformers import AutoTokenizer

    optimum_task, model_class = OPTIMUM_TASKS[options.task]
    remote = options.trust_remote_code
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=remote)
    if options.weight_format in ("fp16", "fp32"):
        from optimum.exporters.openvino import main_export

        logger.info("exporting to OpenVINO IR for %s (%s weights)", options.task, options.weight_format)
        main_export(
            str(model_dir),
            output=output,
            task=optimum_task,
            ov_config=OVConfig(dtype=options.weight_format),
            trust_remote_code=remote,
            convert_tokenizer=False,
        )
    else:
        quantization = OVWeightQuantizationConfig(
            **_quantization_arguments(options), tokenizer=str(model_dir)
        )
        logger.info(
            "exporting to OpenVINO IR for %s with %s weight compression", options.task, options.weight_format
        )
        model = getattr(optimum.intel, model_class).from_pretrained(
            model_dir, export=True, compile=False, quantization_config=quantization, trust_remote_code=remote
        )
        model.save_pretrained(output)
    tokenizer.save_pretrained(output)  # chat template (if any) and tokenizer files beside the IR
    _save_openvino_tokenizers(tokenizer, output)


def _quantization_arguments(options: ExportOptions) -> dict[str, Any]:
    arguments: dict[str, Any] = {"bits": 4 if options.weight_format == "int4" else 8, "sym": options.sym}
    if options.weight_format == "int4":
        arguments.update(group_size=options.group_size, ratio=1.0 if options.ratio is None else options.ratio)
    if options.awq:
        arguments["quant_method"] = "awq"
    if options.scale_estimation:
        arguments["scale_estimation"] = True
    if options.gptq:
        arguments["gptq"] = True
    if options.dataset:
        arguments["dataset"] = _dataset(options.dataset)
    elif options.awq or options.scale_estimation or options.gptq:
        arguments["dataset"] = "auto"  # data-aware methods need calibration text; this one works offline
    if options.num_samples:
        arguments["num_samples"] = options.num_samples
    return arguments


def _dataset(name: str) -> str | list[str]:
    """A local text file becomes its paragraphs; anything else is passed to optimum-intel as a name."""
    path = Path(name).expanduser()
    if not path.is_file():
        return name
    samples = [p.strip() for p in path.read_text().split("\n\n") if p.strip()]
    if not samples:
        raise ExportError(f"the dataset file {path} has no text")
    return samples


def _save_openvino_tokenizers(tokenizer: Any, output: Path) -> None:
    import openvino
    from openvino_tokenizers import convert_tokenizer

    ov_tokenizer, ov_detokenizer = convert_tokenizer(tokenizer, with_detokenizer=True)
    openvino.save_model(ov_tokenizer, output / "openvino_tokenizer.xml")
    openvino.save_model(ov_detokenizer, output / "openvino_detokenizer.xml")


def _check_tokenizer(output: Path, reference: Any, task: Task) -> dict:
    """The exported OpenVINO tokenizer must encode exactly as the source's tokenizer does; a chat model's
    must also carry its chat template."""
    import openvino_genai

    exported = openvino_genai.Tokenizer(str(output))
    wrong = tokenizer_mismatches(openvino_encoder(exported), reference)
    if wrong:
        raise ExportError(f"the exported tokenizer encodes {wrong[0]!r} differently from the source model's")
    has_template = bool(exported.chat_template)
    if task == "text-generation" and not has_template:
        raise ExportError("the exported tokenizer has no chat template")
    return {
        "samples": len(TOKENIZER_SAMPLES),
        "identical": len(TOKENIZER_SAMPLES),
        "chat_template": has_template,
    }


def _manifest(
    source: str, preset: str | None, options: ExportOptions, notes: list[str], check: dict, took: float
) -> dict:
    packages = [
        "openarc",
        "openvino",
        "openvino-genai",
        "openvino-tokenizers",
        "optimum-intel",
        "nncf",
        "transformers",
        "torch",
    ]
    versions = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "source": source,
        "preset": preset,
        "options": dataclasses.asdict(options),
        "notes": notes,
        "tokenizer_check": check,
        "versions": versions,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "duration_s": round(took, 1),
    }
