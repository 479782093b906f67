"""The openvino-genai adapter: one engine process per (model, device), behind the adapter protocol.

This module runs in the server process and imports no OpenVINO: the pipeline lives in the engine
process (see ``process`` and ``worker``), built by ``pipeline.build_engine``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from ..base import Activity, Event, GenerationParams, ModelInfo, ModelLoadError
from .gguf_conversion import ensure_converted
from .model_files import context_length, detect_format
from .process import EngineProcess
from .spec import PipelineSpec

logger = logging.getLogger(__name__)

_BUILDER = "adapters.openvino.worker.pipeline:build_engine"


def _converted(path: Path, converted_dir: Path, setup_logging: Callable[[], None]) -> Path:
    """A GGUF file's kept IR conversion (made now if there is none); any other path as it is."""
    if detect_format(path) != "gguf":
        return path
    return ensure_converted(path, converted_dir, setup_logging)


class OpenVINOGenAIAdapter:
    """Serves one model on one device through its engine process."""

    def __init__(self, info: ModelInfo, process: EngineProcess):
        self.info = info
        self._process = process

    @classmethod
    def load(
        cls,
        spec: PipelineSpec,
        max_queue: int,
        stall_timeout: float | None = None,
        setup_logging: Callable[[], None] = logging.basicConfig,
    ) -> OpenVINOGenAIAdapter:
        """Start the engine process and load the model (blocking); ``ModelLoadError`` if it cannot be."""
        if detect_format(spec.path) not in ("gguf", "openvino-ir"):
            raise ModelLoadError(
                f"{spec.path} is not an OpenVINO IR folder or a .gguf file; export it first (see README)"
            )
        started = time.monotonic()
        source = spec.path
        limit = context_length(source)  # read from the GGUF: its converted folder has no config.json
        if spec.converted_dir is not None:
            spec = dataclasses.replace(
                spec,
                path=_converted(source, spec.converted_dir, setup_logging),
                draft_path=spec.draft_path and _converted(spec.draft_path, spec.converted_dir, setup_logging),
            )
        spec = dataclasses.replace(spec, context_length=limit)
        process = EngineProcess(
            spec.model_id, _BUILDER, spec, spec.running_slots + max_queue, stall_timeout, setup_logging
        )
        logger.info(
            "model %s ready on %s at inference precision %s in %.1f s (tool-call syntax: %s, reasoning: %s)",
            spec.model_id,
            spec.device,
            process.inference_precision or "chosen by the device",
            time.monotonic() - started,
            process.output_format.tool_format or "none",
            "think" if process.output_format.reasoning else "none",
        )
        info = ModelInfo(
            id=spec.model_id,
            device=spec.device,
            context_length=limit,
            created=int(time.time()),
            source=str(source),
            pid=process.pid,
            pids=process.pids,
            output_format=process.output_format,
            inference_precision=process.inference_precision,
        )
        return cls(info, process)

    async def start(self, on_failure: Callable[[str], None]) -> None:
        """Begin watching the engine on the running loop; ``on_failure(reason)`` if it dies or stalls."""
        await self._process.start(on_failure)

    async def stream(self, params: GenerationParams) -> AsyncIterator[Event]:
        """Generate for ``params``; errors before the first event are raised from the first ``__anext__``."""
        async for event in self._process.generate(params):
            yield event

    def activity(self) -> Activity:
        """Requests held by the engine: accepted in total, and being generated now."""
        process = self._process
        return Activity(in_flight=process.in_flight, running=process.running, counts=process.counts)

    async def close(self, reason: str = "The model was unloaded.") -> None:
        """End every request with ``reason`` and stop the engine process."""
        await self._process.close(reason)
