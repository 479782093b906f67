"""The raw openvino-genai ContinuousBatchingPipeline, in-process, with no HTTP: what OpenArc is measured
against (``python -m bench``) and how ``openarc compare`` times an export.

Same model files, device, properties and scheduler settings as the server, the same chat-templated
prompts, ``ignore_eos`` and greedy decoding.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openvino_genai as ov_genai

from ..base import ChatMessage
from ..openvino.worker.pipeline import scheduler_config, warm_up
from ..openvino.worker.prompt import ids_tensor, render_chat
from .timing import LevelResult, RequestTiming


def encode_chat(
    tokenizer: Any, messages: tuple[ChatMessage, ...], tools: tuple[dict[str, Any], ...] = ()
) -> tuple[Any, int]:
    """Render ``messages`` (and ``tools``) with the chat template and tokenize; returns (ids, count)."""
    ids = tokenizer.encode(render_chat(tokenizer, messages, tools), add_special_tokens=False).input_ids
    return ids, int(ids.get_shape()[-1])


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
