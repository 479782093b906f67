"""The openvino-genai backend: loads a model on a device and serves chat completions through one engine."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import openvino as ov
import openvino_genai as ov_genai

from .base import (
    Activity,
    ChatMessage,
    Event,
    GenerationParams,
    InvalidConversationError,
    ModelInfo,
    ModelLoadError,
    PromptTooLongError,
    Usage,
)
from .model_files import context_length, detect_format
from .openvino_engine import ContinuousBatchingEngine

logger = logging.getLogger(__name__)

# Used only when a model's context length is unknown and the request gives no max_tokens.
_FALLBACK_MAX_TOKENS = 4096
_VIRTUAL_DEVICES = {"AUTO", "HETERO", "MULTI", "BATCH"}


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


class OpenVINOGenAIAdapter:
    """Serves one model on one device with continuous batching."""

    def __init__(self, info: ModelInfo, pipeline: Any, engine: ContinuousBatchingEngine):
        self.info = info
        self._pipeline = pipeline
        self._tokenizer = pipeline.get_tokenizer()
        self.engine = engine

    @classmethod
    def load(
        cls,
        model_id: str,
        path: Path,
        device: str,
        properties: Mapping[str, Any],
        scheduler: Mapping[str, Any],
        max_queue: int,
    ) -> OpenVINOGenAIAdapter:
        """Load ``path`` on ``device`` (blocking: call it from a worker thread) and warm the engine up."""
        fmt = detect_format(path)
        if fmt not in ("gguf", "openvino-ir"):
            raise ModelLoadError(
                f"{path} is not an OpenVINO IR folder or a .gguf file; export it first with `openarc export`"
            )
        check_device(device)
        scheduler_config = _scheduler_config(scheduler)
        started = time.monotonic()
        try:
            pipeline = ov_genai.ContinuousBatchingPipeline(str(path), scheduler_config, device, dict(properties))
        except RuntimeError as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"could not load {path} on {device}: {first_line}") from exc
        _warm_up(pipeline)
        logger.info("loaded %s (%s) on %s in %.1f s", model_id, fmt, device, time.monotonic() - started)
        tokenizer = pipeline.get_tokenizer()
        engine = ContinuousBatchingEngine(
            pipeline,
            decode=tokenizer.decode,
            max_in_flight=scheduler_config.max_num_seqs + max_queue,
            name=model_id,
        )
        info = ModelInfo(
            id=model_id,
            device=device,
            context_length=context_length(path),
            created=int(time.time()),
            source=str(path),
        )
        return cls(info, pipeline, engine)

    async def stream(self, params: GenerationParams) -> AsyncIterator[Event]:
        """Generate for ``params``; errors before the first event are raised from the first ``__anext__``."""
        prompt_ids, prompt_tokens = await asyncio.to_thread(self._encode, params.messages)
        max_new_tokens = self._completion_budget(prompt_tokens, params.max_tokens)
        configs = [_generation_config(params, max_new_tokens, i) for i in range(params.n)]
        request = self.engine.new_request(prompt_ids, prompt_tokens, configs)
        self.engine.submit(request)
        finished = False
        try:
            while not finished:
                item = await request.events.get()
                if isinstance(item, BaseException):
                    finished = True  # the engine has already dropped the request
                    raise item
                for event in item:
                    finished = isinstance(event, Usage)
                    yield event
        finally:
            self.engine.release(request, finished)

    def activity(self) -> Activity:
        """Requests held by the engine: accepted in total, and being generated now."""
        return Activity(in_flight=self.engine.in_flight, running=self.engine.running)

    async def close(self) -> None:
        """Stop the engine thread and drop the pipeline."""
        await asyncio.to_thread(self.engine.close)
        self._pipeline = None

    def _encode(self, messages: tuple[ChatMessage, ...]) -> tuple[Any, int]:
        history = ov_genai.ChatHistory([{"role": m.role, "content": m.content} for m in messages])
        try:
            prompt = self._tokenizer.apply_chat_template(history, add_generation_prompt=True)
        except RuntimeError as exc:
            raise InvalidConversationError(f"the model's chat template rejected the messages: {exc}") from exc
        # The template already wrote any BOS/special tokens it wants; adding them again would double them.
        ids = self._tokenizer.encode(prompt, add_special_tokens=False).input_ids
        return ids, int(ids.get_shape()[-1])

    def _completion_budget(self, prompt_tokens: int, max_tokens: int | None) -> int:
        limit = self.info.context_length
        if limit is None:
            return max_tokens or _FALLBACK_MAX_TOKENS
        available = limit - prompt_tokens
        requested = max_tokens if max_tokens is not None else max(available, 0)
        if available <= 0 or requested > available:
            raise PromptTooLongError(prompt_tokens, requested, limit)
        return requested


def _scheduler_config(settings: Mapping[str, Any]) -> Any:
    config = ov_genai.SchedulerConfig()
    for name, value in settings.items():
        if not hasattr(config, name):
            raise ModelLoadError(f"unknown scheduler setting {name!r}")
        setattr(config, name, value)
    return config


def _generation_config(params: GenerationParams, max_new_tokens: int, index: int) -> Any:
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


def _warm_up(pipeline: Any) -> None:
    """Run one tiny generation so the first client request does not pay for kernel compilation."""
    config = ov_genai.GenerationConfig()
    config.max_new_tokens = 2
    handle = pipeline.add_request(0, "Hi", config)
    while handle.get_status() == ov_genai.GenerationStatus.RUNNING:
        pipeline.step()
    handle.read_all()
