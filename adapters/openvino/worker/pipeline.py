"""Building an engine: load the pipeline for a spec, warm it up, wrap it (engine process only)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openvino as ov
import openvino_genai as ov_genai

from ...base import ModelLoadError
from ..devices import effective_precision
from ..file_lock import exclusive_lock
from ..model_files import detect_format
from ..spec import PRECISION_HINT, PipelineSpec, default_properties, device_family
from .engine import ContinuousBatchingEngine
from .prefix_cache import PrefixCacheTracker
from .sequential import SequentialEngine

logger = logging.getLogger(__name__)

_VIRTUAL_DEVICES = {"AUTO", "HETERO", "MULTI", "BATCH"}
# openvino-genai's KV-cache block sizes (tokens per block) by device.
_KV_BLOCK_SIZES = {"CPU": 32, "GPU": 16}


def build_engine(spec: PipelineSpec) -> Any:
    """Load the pipeline for ``spec``, warm it up and wrap it in the right engine."""
    fmt = detect_format(spec.path)
    check_device(spec.device)
    started = time.monotonic()
    properties = {**spec.properties, **_speculative_properties(spec)}
    try:
        with _compile_cache_lock(spec.properties.get("CACHE_DIR")):
            if spec.sequential:
                pipeline = ov_genai.LLMPipeline(str(spec.path), spec.device, properties)
            else:
                pipeline = ov_genai.ContinuousBatchingPipeline(
                    str(spec.path), scheduler_config(spec.scheduler), spec.device, properties
                )
    except RuntimeError as exc:
        logger.error("loading %s on %s failed: %s", spec.path, spec.device, exc)  # the whole message
        raise ModelLoadError(f"could not load {spec.path} on {spec.device}: {_summary(exc)}") from exc
    one_block_percent = warm_up(
        pipeline, sequential=spec.sequential, speculative=spec.speculative, full=spec.warm_up
    )
    if spec.sequential:
        engine = SequentialEngine(pipeline)
    else:
        engine = ContinuousBatchingEngine(pipeline, _prefix_cache_tracker(spec, one_block_percent))
    engine.inference_precision = effective_precision(spec.device, spec.properties.get(PRECISION_HINT))
    logger.info(
        "loaded %s (%s) on %s at inference precision %s with the %s engine in %.1f s",
        spec.model_id,
        fmt,
        spec.device,
        engine.inference_precision or "chosen by the device",
        "sequential" if spec.sequential else "continuous-batching",
        time.monotonic() - started,
    )
    return engine


def _speculative_properties(spec: PipelineSpec) -> dict[str, Any]:
    """The pipeline properties that turn speculative decoding on (none when it is off)."""
    if spec.prompt_lookup:
        return {"prompt_lookup": True}
    if spec.draft_path is not None:
        draft_device = spec.draft_device or spec.device
        if device_family(draft_device) == spec.device_family:
            properties = dict(spec.properties)  # the model's precision and cache settings, as the model
        else:
            cache = spec.properties.get("CACHE_DIR")
            properties = default_properties(draft_device, {}, Path(cache) if cache else None)
        return {"draft_model": ov_genai.draft_model(str(spec.draft_path), draft_device, **properties)}
    return {}


@contextlib.contextmanager
def _compile_cache_lock(cache_dir: Any) -> Iterator[None]:
    """Hold an exclusive lock on OpenVINO's compiled-model cache folder while a model compiles.

    OpenVINO's cache is not safe across processes: two engines compiling the same model at once (a
    restart beside a run-time load, or two servers sharing a cache) failed here with "filesystem
    error: cannot set permissions: No such file or directory [.../<hash>.blob]".
    """
    if not cache_dir:
        yield
        return
    folder = Path(str(cache_dir))
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(folder / ".openarc-compile.lock"):
        yield


def _summary(exc: BaseException) -> str:
    """OpenVINO's messages start with "Exception from <source file>:<line>:"; the reason follows."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check "))]
    return (useful or lines or [type(exc).__name__])[0]


def _prefix_cache_tracker(spec: PipelineSpec, one_block_percent: float) -> PrefixCacheTracker | None:
    """A tracker sized like the engine's KV cache (``100 / one_block_percent`` blocks, from the
    warm-up), or ``None`` where its block layout is unknown."""
    block_size = _KV_BLOCK_SIZES.get(spec.device_family)
    if not spec.scheduler.get("enable_prefix_caching", False) or block_size is None or one_block_percent <= 0:
        return None
    return PrefixCacheTracker(block_size, round(100 / one_block_percent))


def check_device(device: str) -> None:
    """Raise ``ModelLoadError`` with a one-line reason if this machine has no such device."""
    available = ov.Core().available_devices
    kind, _, targets = device.partition(":")
    wanted = [t for t in targets.split(",") if t] if kind.upper() in _VIRTUAL_DEVICES else [device]
    for name in wanted:
        base = name.split(".")[0].upper()
        if name.upper() not in available and not any(d.split(".")[0] == base for d in available):
            raise ModelLoadError(
                f"device {name!r} is not available on this machine (OpenVINO sees: {', '.join(available)})"
            )


def scheduler_config(settings: dict[str, Any]) -> Any:
    """A ``SchedulerConfig`` from setting names and values; unknown names are a load error."""
    config = ov_genai.SchedulerConfig()
    for name, value in settings.items():
        if not hasattr(config, name):
            raise ModelLoadError(f"unknown scheduler setting {name!r}")
        setattr(config, name, value)
    return config


WARM_UP_PROMPTS = (
    "The lighthouse keeper climbed the stairs at dusk and lit the lamp for the ships.",
    "A short list: apples, pears, plums, cherries, figs and grapes from the market.",
)


def warm_up(pipeline: Any, sequential: bool = False, speculative: bool = False, full: bool = True) -> float:
    """Run the shapes a server meets first, so its first users do not pay for them: a prompt of
    several tokens (a one-token warm-up left about 1.9 s of first-use cost to the first request with
    a real prompt, measured on the demo model) and, on the batching engine, two sequences decoded in
    one step. With ``full`` off (the model's ``warm_up = false``) only the one-token request runs on
    the batching engine, because it sizes the prefix-cache tracker, and nothing on the sequential one.

    Returns the KV-cache usage, in percent, of one block (0 when unknown): the batching engine's first
    warm-up request fits in one block, and the pipeline reports usage in percent of all blocks.
    """
    config = ov_genai.GenerationConfig()
    config.max_new_tokens = 2
    if speculative:  # a speculative pipeline refuses requests that do not say how far to guess
        config.num_assistant_tokens, config.max_ngram_size = 2, 2
    tokenizer = pipeline.get_tokenizer()
    one_token = tokenizer.encode("Hello", add_special_tokens=False).input_ids
    prompts = [tokenizer.encode(text, add_special_tokens=False).input_ids for text in WARM_UP_PROMPTS]
    if sequential:
        if full:
            for ids in (one_token, *prompts):
                pipeline.generate(ids, config)
        return 0.0
    _run(pipeline, [one_token], config)
    one_block_percent = pipeline.get_metrics().max_cache_usage
    if full:
        _run(pipeline, prompts, config)
    return one_block_percent


def _run(pipeline: Any, prompts: list[Any], config: Any) -> None:
    """Generate for ``prompts`` together on a continuous-batching pipeline, discarding the output."""
    handles = [pipeline.add_request(number, ids, config) for number, ids in enumerate(prompts)]
    while any(h.get_status() == ov_genai.GenerationStatus.RUNNING for h in handles):
        pipeline.step()
    for handle in handles:
        handle.read_all()
