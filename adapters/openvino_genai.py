"""The openvino-genai backend: one engine process per (model, device), behind the adapter protocol.

This module runs in the server process and imports no OpenVINO: the pipeline lives in the engine
process (see ``engine_process``), built by ``openvino_pipeline.build_engine``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .base import Activity, Event, GenerationParams, ModelInfo, ModelLoadError
from .engine_process import EngineProcess
from .model_files import context_length, detect_format

logger = logging.getLogger(__name__)

EngineKind = Literal["auto", "continuous", "sequential"]
# Devices whose LLM pipelines cannot batch requests: they get the sequential engine under "auto".
_SEQUENTIAL_DEVICES = {"NPU"}
_BUILDER = "adapters.openvino_pipeline:build_engine"


@dataclass(frozen=True)
class PipelineSpec:
    """Everything the engine process needs to load a model (picklable: it crosses the process boundary)."""

    model_id: str
    path: Path
    device: str
    properties: dict[str, Any] = field(default_factory=dict)
    scheduler: dict[str, Any] = field(default_factory=dict)
    engine: EngineKind = "auto"
    context_length: int | None = None

    @property
    def device_family(self) -> str:
        """The device without index or targets: ``GPU.1`` -> ``GPU``, ``AUTO:GPU,CPU`` -> ``AUTO``."""
        return self.device.split(":")[0].split(".")[0].upper()

    @property
    def sequential(self) -> bool:
        if self.engine != "auto":
            return self.engine == "sequential"
        return self.device_family in _SEQUENTIAL_DEVICES

    @property
    def running_slots(self) -> int:
        """Requests the engine generates for at once."""
        return 1 if self.sequential else int(self.scheduler.get("max_num_seqs", 256))


class OpenVINOGenAIAdapter:
    """Serves one model on one device through its engine process."""

    def __init__(self, info: ModelInfo, process: EngineProcess):
        self.info = info
        self._process = process

    @classmethod
    def load(cls, spec: PipelineSpec, max_queue: int, log_level: int | str = "INFO") -> OpenVINOGenAIAdapter:
        """Start the engine process and load the model (blocking); ``ModelLoadError`` if it cannot be."""
        if detect_format(spec.path) not in ("gguf", "openvino-ir"):
            raise ModelLoadError(
                f"{spec.path} is not an OpenVINO IR folder or a .gguf file; export it first (see README)"
            )
        limit = context_length(spec.path)
        spec = PipelineSpec(**{**spec.__dict__, "context_length": limit})
        started = time.monotonic()
        process = EngineProcess(spec.model_id, _BUILDER, spec, spec.running_slots + max_queue, log_level)
        logger.info("model %s ready on %s in %.1f s", spec.model_id, spec.device, time.monotonic() - started)
        info = ModelInfo(
            id=spec.model_id,
            device=spec.device,
            context_length=limit,
            created=int(time.time()),
            source=str(spec.path),
        )
        return cls(info, process)

    async def stream(self, params: GenerationParams) -> AsyncIterator[Event]:
        """Generate for ``params``; errors before the first event are raised from the first ``__anext__``."""
        async for event in self._process.generate(params):
            yield event

    def activity(self) -> Activity:
        """Requests held by the engine: accepted in total, and being generated now."""
        return Activity(in_flight=self._process.in_flight, running=self._process.running)

    async def close(self) -> None:
        """Stop the engine process."""
        await asyncio.to_thread(self._process.close)
