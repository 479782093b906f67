"""The same workload on the raw openvino-genai ContinuousBatchingPipeline, in-process, with no HTTP.

This is the ceiling OpenArc is measured against: same model file, device, properties and scheduler
settings, same chat-templated prompts, ``ignore_eos`` and greedy decoding.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openvino_genai as ov_genai

from adapters.base import ChatMessage
from adapters.openvino.worker.pipeline import scheduler_config, warm_up
from adapters.openvino.worker.prompt import encode_chat, ids_tensor

from .stats import LevelResult, RequestTiming


def loaded_path(source: str) -> Path:
    """The files the server loads for a model source: a GGUF's kept IR conversion, else the source's."""
    from adapters.openvino.gguf_conversion import ensure_converted
    from adapters.openvino.model_files import detect_format
    from gateway.config import ServerConfig
    from gateway.sources import resolve_source

    cache_dir = ServerConfig().cache_path
    path = resolve_source(source, cache_dir)
    return ensure_converted(path, cache_dir / "converted") if detect_format(path) == "gguf" else path


class RawPipeline:
    """One pipeline, loaded once, run level by level."""

    def __init__(self, path: Path, device: str, properties: dict[str, Any], scheduler: dict[str, Any]):
        self.pipeline = ov_genai.ContinuousBatchingPipeline(
            str(path), scheduler_config(scheduler), device, properties
        )
        self.tokenizer = self.pipeline.get_tokenizer()
        warm_up(self.pipeline)
        self._next_id = 1

    def prefill_seconds(self, ids: list[int]) -> float:
        """Seconds from adding ``ids`` (as they are, no template) to reading their first token."""
        config = ov_genai.GenerationConfig()
        config.max_new_tokens = 1
        start = time.perf_counter()
        handle = self.pipeline.add_request(self._next_id, ids_tensor(list(ids)), config)
        self._next_id += 1
        while handle.get_status() == ov_genai.GenerationStatus.RUNNING:
            self.pipeline.step()
        handle.read_all()
        return time.perf_counter() - start

    def level(self, prompts: list[str], max_tokens: int) -> LevelResult:
        """Add every prompt at once and step until all are done, timing each token as it is read."""
        config = ov_genai.GenerationConfig()
        config.max_new_tokens = max_tokens
        config.ignore_eos = True
        inputs = [encode_chat(self.tokenizer, (ChatMessage("user", p),))[0] for p in prompts]
        start = time.perf_counter()
        handles = []
        for ids in inputs:
            handles.append(self.pipeline.add_request(self._next_id, ids, config))
            self._next_id += 1
        times: list[list[float]] = [[] for _ in handles]
        counts = [0] * len(handles)
        while any(h.get_status() == ov_genai.GenerationStatus.RUNNING or h.can_read() for h in handles):
            self.pipeline.step()
            now = time.perf_counter() - start
            for i, handle in enumerate(handles):
                while handle.can_read():
                    for output in handle.read().values():
                        counts[i] += len(output.generated_ids)
                        times[i].append(now)
        wall = time.perf_counter() - start
        requests = [
            RequestTiming(ttft=t[0], token_times=t, completion_tokens=c)
            for t, c in zip(times, counts, strict=True)
        ]
        return LevelResult(len(prompts), wall, requests)
