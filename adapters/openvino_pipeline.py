"""Building openvino-genai pipelines and the configs they take; used inside the engine process."""

from __future__ import annotations

import logging
import time
from typing import Any

import openvino as ov
import openvino_genai as ov_genai

from .base import ChatMessage, GenerationParams, InvalidConversationError, ModelLoadError, first_line
from .model_files import detect_format
from .openvino_genai import PipelineSpec
from .prefix_cache import PrefixCacheTracker

logger = logging.getLogger(__name__)

_VIRTUAL_DEVICES = {"AUTO", "HETERO", "MULTI", "BATCH"}
# openvino-genai's KV-cache block sizes (tokens per block) by device.
_KV_BLOCK_SIZES = {"CPU": 32, "GPU": 16}


def build_engine(spec: PipelineSpec) -> Any:
    """Load the pipeline for ``spec``, warm it up and wrap it in the right engine."""
    from .openvino_engine import ContinuousBatchingEngine
    from .openvino_sequential import SequentialEngine

    fmt = detect_format(spec.path)
    check_device(spec.device)
    started = time.monotonic()
    try:
        if spec.sequential:
            pipeline = ov_genai.LLMPipeline(str(spec.path), spec.device, dict(spec.properties))
        else:
            pipeline = ov_genai.ContinuousBatchingPipeline(
                str(spec.path), scheduler_config(spec.scheduler), spec.device, dict(spec.properties)
            )
    except RuntimeError as exc:
        raise ModelLoadError(f"could not load {spec.path} on {spec.device}: {first_line(exc)}") from exc
    warm_up(pipeline, sequential=spec.sequential)
    if spec.sequential:
        engine = SequentialEngine(pipeline, spec.context_length)
    else:
        engine = ContinuousBatchingEngine(
            pipeline, spec.context_length, _prefix_cache_tracker(pipeline, spec)
        )
    logger.info(
        "loaded %s (%s) on %s with the %s engine in %.1f s",
        spec.model_id,
        fmt,
        spec.device,
        "sequential" if spec.sequential else "continuous-batching",
        time.monotonic() - started,
    )
    return engine


def _prefix_cache_tracker(pipeline: Any, spec: PipelineSpec) -> PrefixCacheTracker | None:
    """A tracker sized like the engine's KV cache, or ``None`` where its block layout is unknown.

    The cache's size in blocks is read from the warm-up: it used exactly one block, and the pipeline
    reports usage in percent of all blocks.
    """
    block_size = _KV_BLOCK_SIZES.get(spec.device_family)
    one_block_percent = pipeline.get_metrics().max_cache_usage
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


def encode_chat(tokenizer: Any, messages: tuple[ChatMessage, ...]) -> tuple[Any, int]:
    """Render ``messages`` with the model's chat template and tokenize; returns (ids tensor, count)."""
    history = ov_genai.ChatHistory([{"role": m.role, "content": m.content} for m in messages])
    try:
        prompt = tokenizer.apply_chat_template(history, add_generation_prompt=True)
    except RuntimeError as exc:
        raise InvalidConversationError(f"the model's chat template rejected the messages: {exc}") from exc
    # The template already wrote any BOS/special tokens it wants; adding them again would double them.
    ids = tokenizer.encode(prompt, add_special_tokens=False).input_ids
    return ids, int(ids.get_shape()[-1])


def scheduler_config(settings: dict[str, Any]) -> Any:
    """A ``SchedulerConfig`` from setting names and values; unknown names are a load error."""
    config = ov_genai.SchedulerConfig()
    for name, value in settings.items():
        if not hasattr(config, name):
            raise ModelLoadError(f"unknown scheduler setting {name!r}")
        setattr(config, name, value)
    return config


def generation_config(params: GenerationParams, max_new_tokens: int, index: int) -> Any:
    """The ``GenerationConfig`` for choice ``index`` of a request."""
    config = ov_genai.GenerationConfig()
    config.max_new_tokens = max_new_tokens
    config.ignore_eos = params.ignore_eos
    config.presence_penalty = params.presence_penalty
    config.frequency_penalty = params.frequency_penalty
    config.repetition_penalty = params.repetition_penalty
    if params.temperature > 0:
        config.do_sample = True
        config.temperature = params.temperature
        config.top_p = params.top_p
        if params.top_k > 0:
            config.top_k = params.top_k
        if params.min_p > 0:
            config.min_p = params.min_p
    if params.seed is not None:
        config.rng_seed = params.seed + index  # n choices with one seed must still differ
    # The engine stops on these; it keeps the matched text so that our StopMatcher, which sees every
    # delta, is the one place that cuts it (openvino-genai alone leaves a stop string that ends
    # mid-token in the output).
    config.stop_strings = set(params.stop)
    config.include_stop_str_in_output = True
    return config


def warm_up(pipeline: Any, sequential: bool = False) -> None:
    """Run one tiny generation so the first client request does not pay for kernel compilation."""
    config = ov_genai.GenerationConfig()
    config.max_new_tokens = 2
    # A few tokens and no chat template: the warm-up must fit in one KV block (see _prefix_cache_tracker).
    ids = pipeline.get_tokenizer().encode("Hello", add_special_tokens=False).input_ids
    if sequential:
        pipeline.generate(ids, config)
        return
    handle = pipeline.add_request(0, ids, config)
    while handle.get_status() == ov_genai.GenerationStatus.RUNNING:
        pipeline.step()
    handle.read_all()
