"""ModelRegistry: which models are served, by which adapter; unknown ids are a 404, never a fallback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import msgspec

from adapters.base import Adapter, ModelInfo, ModelLoadError

from .config import ConfigError, ModelSpec, ServerConfig
from .errors import ModelNotFoundError
from .sources import resolve_source

logger = logging.getLogger(__name__)

Loader = Callable[[ModelSpec, Path, Path], Adapter]
"""Builds an adapter for a spec, given the model's local path and the cache folder (blocking)."""


def load_openvino_genai(spec: ModelSpec, path: Path, cache_dir: Path) -> Adapter:
    """The default loader: the openvino-genai adapter, with compiled blobs cached between runs."""
    from adapters.openvino_genai import OpenVINOGenAIAdapter, PipelineSpec

    pipeline = PipelineSpec(
        model_id=spec.id,
        path=path,
        device=spec.device,
        properties={"CACHE_DIR": str(cache_dir / "compiled"), **spec.properties},
        scheduler=msgspec.structs.asdict(spec.scheduler),
        engine=spec.engine,
    )
    return OpenVINOGenAIAdapter.load(pipeline, spec.max_queue, logging.getLogger().getEffectiveLevel())


class ModelRegistry:
    """Owns every loaded adapter for the life of the server."""

    def __init__(self, config: ServerConfig, loader: Loader = load_openvino_genai):
        self._config = config
        self._loader = loader
        self._adapters: dict[str, Adapter] = {}

    def load_all(self) -> None:
        """Load every configured model (blocking); ``ConfigError`` with one line on the first failure."""
        for spec in self._config.models:
            path = resolve_source(spec.source, self._config.cache_path)
            try:
                self._adapters[spec.id] = self._loader(spec, path, self._config.cache_path)
            except ModelLoadError as exc:
                raise ConfigError(f"model {spec.id!r}: {exc}") from exc

    def get(self, model_id: str) -> Adapter:
        """The adapter serving ``model_id``; ``ModelNotFoundError`` (404) if there is none."""
        try:
            return self._adapters[model_id]
        except KeyError:
            raise ModelNotFoundError(model_id) from None

    def request_timeout(self, model_id: str) -> float | None:
        """Seconds a request to ``model_id`` may take (``None``: no limit)."""
        return next(spec.request_timeout for spec in self._config.models if spec.id == model_id)

    def models(self) -> list[ModelInfo]:
        """Every model being served, in configuration order."""
        return [adapter.info for adapter in self._adapters.values()]

    async def close_all(self) -> None:
        """Stop every adapter; called once when the server shuts down."""
        adapters, self._adapters = list(self._adapters.values()), {}
        await asyncio.gather(*(adapter.close() for adapter in adapters), return_exceptions=True)
